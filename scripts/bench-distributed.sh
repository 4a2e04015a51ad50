#!/usr/bin/env bash
# Benchmark of the distributed roles on one machine: etcd, 3 ingesters (RF 3), a distributor and a
# querier on OS-picked ports; loadgen.py push through the distributor; then every process's peak RSS
# and CPU time. Needs a release build (cargo build --release), etcd and loadgen.py (with cramjam).
# BIN, PYTHON, LOADGEN, LINES, LOADGEN_ARGS, EXTRA (more norn flags), PERF=1 (perf record) override.
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
BIN=${BIN:-target/release/norn}
PYTHON=${PYTHON:-python3}
LOADGEN=${LOADGEN:-../shared/bench/loadgen.py}
LINES=${LINES:-4000000}
W=$(mktemp -d /tmp/distbench.XXXX)
read -r P_ETCD P_PEER P_I0 P_I1 P_I2 P_G0 P_G1 P_G2 P_D P_Q < <(free_ports 10)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
start_etcd "$W" "$P_ETCD" "$P_PEER"
LIM="--limits.ingestion-rate-mb=100000 --limits.ingestion-burst-size-mb=100000 --limits.per-stream-rate-limit=10GB --limits.per-stream-rate-limit-burst=10GB"
COMMON="--ring.store=etcd --ring.etcd.endpoints=127.0.0.1:$P_ETCD --replication-factor=3 --storage.backend=filesystem --storage.filesystem.dir=$W/chunks $LIM ${EXTRA:-}"
pids=()
for i in 0 1 2; do
  $BIN $COMMON --target=ingester --instance.id=ingester-$i --data.dir=$W/ing$i --http.addr=127.0.0.1:$(eval echo \$P_I$i) --grpc.addr=127.0.0.1:$(eval echo \$P_G$i) >"$W/ing$i.log" 2>&1 &
  pids+=($!)
done
$BIN $COMMON --target=distributor --instance.id=distributor-0 --data.dir=$W/dist --http.addr=127.0.0.1:$P_D >"$W/dist.log" 2>&1 &
pids+=($!)
$BIN $COMMON --target=querier --instance.id=querier-0 --data.dir=$W/q --http.addr=127.0.0.1:$P_Q >"$W/q.log" 2>&1 &
pids+=($!)
for port in $P_I0 $P_I1 $P_I2 $P_D $P_Q; do
  until curl -sf http://127.0.0.1:$port/ready >/dev/null; do sleep 0.2; done
done
until [ "$(curl -sf "http://127.0.0.1:$P_D/ring?format=json" | python3 -c 'import json,sys; print(sum(1 for s in json.load(sys.stdin)["shards"] if s["state"]=="ACTIVE"))')" = 3 ]; do sleep 0.2; done
if [ -n "${PERF:-}" ]; then
  perf record -F 999 ${PERF_G:-} -o "${PERF_OUT:-perf.data}" -p "$(IFS=,; echo "${pids[*]}")" 2>/dev/null &
  perf_pid=$!
fi
"$PYTHON" "$LOADGEN" push --url http://127.0.0.1:$P_D --lines "$LINES" ${LOADGEN_ARGS:-}
if [ -n "${PERF:-}" ]; then kill -INT $perf_pid; wait $perf_pid || true; fi
total=0
for p in "${pids[@]}"; do
  hwm=$(awk '/VmHWM/{print $2}' /proc/$p/status); rss=$(awk '/VmRSS/{print $2}' /proc/$p/status)
  cpu=$(awk '{printf "%.1f", ($14+$15)/100}' /proc/$p/stat)
  echo "pid $p $(tr '\0' ' ' </proc/$p/cmdline | grep -o -- '--target=[a-z]*') peak_rss_kb=$hwm rss_kb=$rss cpu_s=$cpu"
  total=$((total + hwm))
done
echo "sum of peak RSS: $((total / 1024)) MB"
