#!/usr/bin/env python3
"""Print the README results tables (markdown) from chronik-perf JSON results.

usage: readme_table.py DISK_JSON RUN_JSON...

Copies figures verbatim from the result files, so the README never carries hand-typed numbers.
"""
import json
import sys


def block(b):
    return f"{b // 1048576} MiB" if b >= 1048576 else f"{b // 1024} KiB"


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    d = json.load(open(argv[1]))
    m = d["machine"]
    print(f"Disk `{d['dir']}` ({m['cores']} cores, kernel {m['kernel']}), file {d['file_bytes'] // 1048576} MiB:\n")
    print("| block | qd | MB/s | IOPS | p50 ms | p99 ms | p99.9 ms |")
    print("|---|---|---|---|---|---|---|")
    for w in d["writes"]:
        lat = w["latency_ms"]
        print(f"| {block(w['block_bytes'])} | {w['queue_depth']} | {w['mb_per_s']:.1f} | {w['iops']:.0f} "
              f"| {lat['p50']:.3f} | {lat['p99']:.3f} | {lat['p999']:.3f} |")
    s = d["sync"]
    f = s["fdatasync_latency_ms"]
    print(f"\nfdatasync after a 4 KiB O_DIRECT write ({s['count']} samples): p50 {f['p50']:.3f} ms, "
          f"p90 {f['p90']:.3f}, p99 {f['p99']:.3f}, p99.9 {f['p999']:.3f}, max {f['max']:.3f}. "
          f"Best sequential write: {d['best_write_mb_per_s']:.1f} MB/s.\n")
    print("| workload | target msg/s | msg/s | MB/s | % of disk | produce p50 / p99 / p99.9 ms "
          "| e2e p50 / p99 / p99.9 ms | delivery | broker cores, RSS MiB | harness cores | load avg start/end |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in argv[2:]:
        r = json.load(open(path))
        ph = r["phases"]["measure"]
        lat = ph["latency_ms"]
        e2e = ph["e2e_latency_ms"]
        dv = r["delivery"]
        groups = dv["groups"]
        if groups:
            deliv = f"{dv['acked']} acked; " + ", ".join(
                f"g{g['group']}: missing {g['missing']}, dup {g['duplicates']}" for g in groups)
        else:
            deliv = f"{dv['acked']} acked; no consumers"
        pct = f"{r['disk']['broker_pct_of_disk']:.1f}%" if r.get("disk") else "n/a"
        e2e_s = f"{e2e['p50']:.1f} / {e2e['p99']:.1f} / {e2e['p999']:.1f}" if e2e["count"] else "n/a"
        b = r.get("broker")
        broker = f"{b['cpu_cores']:.2f}, {b['rss_max_bytes'] / 1048576:.0f}" if b else "n/a"
        target = ph["target_msgs_per_s"] or "max"
        la = "/".join(f"{x:.1f}" for x in r.get("load_avg_1m", [])) or "n/a"
        print(f"| {r['workload']['name']} | {target} | {ph['msgs_per_s']:.0f} | {ph['mb_per_s']:.1f} | {pct} "
              f"| {lat['p50']:.2f} / {lat['p99']:.2f} / {lat['p999']:.2f} | {e2e_s} | {deliv} | {broker} "
              f"| {r['harness']['cpu_cores']:.2f} | {la} |")
    # Catch-up: the fastest second of consumption while the consumer was behind the producer.
    for path in argv[2:]:
        r = json.load(open(path))
        delay = r["workload"].get("consumers", {}).get("delay_s", 0)
        if not delay:
            continue
        tl = r["timeline"]
        peak = max((t["consumed_msgs_per_s"] for t in tl), default=0)
        produced = r["phases"]["measure"]["msgs_per_s"]
        size = r["workload"]["producers"]["message_size"]
        mb = f"{peak * size / 1e6:.1f} MB/s, " if isinstance(size, int) else ""
        print(f"\n{r['workload']['name']}: consumer started {delay} s late; peak catch-up "
              f"{peak:.0f} msg/s ({mb}{peak / produced:.2f}x the produce rate).")


if __name__ == "__main__":
    main(sys.argv)
