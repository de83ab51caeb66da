#!/usr/bin/env bash
# Runs `disk`, then every shipped workload against a fresh release chronik-server each (empty
# data dir), then the compare method check (one server as A and B). Needs release builds:
#   cargo build --release -p chronik-server -p chronik-perf
# Env: OUT (results dir), DATA (broker data dir, must support O_DIRECT), WARMUP, DURATION,
# WORKLOADS (space-separated names), SKIP_COMPARE=1, WAL_SYNC_MODE (default always: fsync before
# every acknowledgement, the strictest mode).
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-perf-results}
DATA=${DATA:-/work/chronik-perf-data}
case "$(basename "$DATA")" in
  *chronik*) ;;
  *) echo "DATA=$DATA: refusing to wipe a directory whose name does not contain 'chronik'" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
PERF=target/release/chronik-perf
SRV=target/release/chronik-server
PORT=19092
WARMUP=${WARMUP:-3}
DURATION=${DURATION:-15}
$PERF disk --dir "$(dirname "$DATA")" --file-mib 1024 --seconds 3 --fsyncs 2000 --output $OUT/disk.json > $OUT/disk.txt 2>&1
start_server() {
  rm -rf "$DATA"; mkdir -p "$DATA"
  CHRONIK_WAL_SYNC_MODE=${WAL_SYNC_MODE:-always} CHRONIK_BIND_ADDR=127.0.0.1 CHRONIK_ADVERTISED_ADDR=127.0.0.1 CHRONIK_KAFKA_PORT=$PORT \
    $SRV --data-dir "$DATA/d" standalone > $OUT/server-$1.log 2>&1 &
  SPID=$!
  for i in $(seq 1 100); do
    if (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "server did not start" >&2; return 1
}
stop_server() { kill $SPID 2>/dev/null; wait $SPID 2>/dev/null; }
for w in ${WORKLOADS:-ingest-1k latency-1k many-partitions fanout large-4m catchup-1k}; do
  start_server $w || continue
  timeout 300 $PERF run perf/workloads/$w.toml --bootstrap 127.0.0.1:$PORT --broker-pid $SPID \
    --warmup $WARMUP --duration $DURATION --disk-result $OUT/disk.json --output $OUT/$w.json > $OUT/$w.txt 2>&1
  echo "$w rc=$? $(date +%T)" >> $OUT/status.log
  stop_server
done
if [ -z "${SKIP_COMPARE:-}" ]; then
  start_server compare
  timeout 600 $PERF compare perf/workloads/latency-1k.toml --bootstrap 127.0.0.1:$PORT --bootstrap 127.0.0.1:$PORT \
    --rounds 5 --warmup 2 --duration 5 --broker-pids $SPID,$SPID --output $OUT/compare.json > $OUT/compare.txt 2> $OUT/compare.err
  echo "compare rc=$? $(date +%T)" >> $OUT/status.log
  stop_server
fi
echo done >> $OUT/status.log
