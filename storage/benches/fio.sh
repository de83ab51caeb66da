#!/usr/bin/env bash
# Raw device figures for the WAL benchmark, measured with fio on the same filesystem:
#  - O_DIRECT sequential write bandwidth (1 MiB blocks, io_uring, queue depth 8);
#  - fdatasync latency after a 4 KiB O_DIRECT write (psync, one outstanding write), and the
#    full write+fdatasync cycle (what an `always`-mode append waits for at low load), on a file
#    whose blocks were written before (overwrite: the device's best case, and what the WAL does
#    in recycled segments);
#  - the same on a fresh fallocated file (`raw_fresh_*`: unwritten extents, every fdatasync
#    commits the ext4 journal; what a WAL writing into new segments pays).
# Usage: fio.sh [DIR] [SECONDS]. Prints key=value lines (parsed by benches/wal.rs).
set -euo pipefail
DIR=${1:-${CHRONIK_BENCH_DIR:-/tmp/chronik-wal-bench}}
SECS=${2:-${CHRONIK_BENCH_SECS:-3}}
mkdir -p "$DIR"
trap 'rm -f "$DIR"/fio.* "$DIR"/seq.json "$DIR"/sync.json "$DIR"/fresh.json' EXIT
fio --name=seqw --filename="$DIR/fio.seq" --size=4G --bs=1M --rw=write --direct=1 \
    --ioengine=io_uring --iodepth=8 --runtime="$SECS" --time_based --output-format=json \
    > "$DIR/seq.json"
# Lay the file out with real writes first, then overwrite it with write+fdatasync cycles.
fio --name=layout --filename="$DIR/fio.sync" --size=256M --bs=1M --rw=write --direct=1 \
    --ioengine=psync --output-format=json > /dev/null
fio --name=sync --filename="$DIR/fio.sync" --size=256M --bs=4k --rw=write --direct=1 \
    --ioengine=psync --fdatasync=1 --runtime="$SECS" --time_based --output-format=json \
    > "$DIR/sync.json"
fio --name=fresh --filename="$DIR/fio.fresh" --size=256M --bs=4k --rw=write --direct=1 \
    --ioengine=psync --fdatasync=1 --fallocate=native --runtime="$SECS" --time_based \
    --output-format=json > "$DIR/fresh.json"
python3 - "$DIR" <<'PY'
import json, sys
d = sys.argv[1]
seq = json.load(open(d + "/seq.json"))["jobs"][0]["write"]
print(f"raw_seq_write_mib_s={seq['bw_bytes'] / 1048576:.1f}")
for prefix, name in (("raw", "sync"), ("raw_fresh", "fresh")):
    job = json.load(open(f"{d}/{name}.json"))["jobs"][0]
    sync = job["sync"]["lat_ns"]["percentile"]
    wr = job["write"]["clat_ns"]["percentile"]
    for p, key in (("p50", "50.000000"), ("p99", "99.000000"), ("p999", "99.900000")):
        print(f"{prefix}_fdatasync_{p}_us={sync[key] / 1000:.0f}")
        # Sum of the two percentiles: an upper bound of the cycle's percentile.
        print(f"{prefix}_write_plus_fdatasync_{p}_us={(sync[key] + wr[key]) / 1000:.0f}")
    rate = job["sync"]["lat_ns"]["N"] / (float(job["job_runtime"]) / 1000)
    print(f"{prefix}_fdatasync_per_s={rate:.0f}")
PY
