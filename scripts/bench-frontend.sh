#!/usr/bin/env bash
# Benchmark of the query frontend (not a test): etcd, one distributor+ingester process, a query
# frontend with two queriers pulling from it, and a querier on its own, on OS-picked ports;
# loadgen.py pushes 26h of data (1.6M lines by default) through the distributor. Prints:
#   - a dashboard query over the last 24h (step 5m) through the frontend: first run, then repeats
#     of the same window (served from the results cache but for the newest split), and the speedup;
#   - a 24h needle search through the frontend (2 queriers) and through the lone querier, fastest
#     of RUNS each (each run a distinct query text, so the results cache cannot answer it);
#   - peak RSS of every querier.
# Needs a release build (cargo build --release), etcd, python3 with cramjam for loadgen.py.
# BIN, PYTHON, LOADGEN, LINES, RUNS, EXTRA (more norn flags for every process) override.
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
BIN=${BIN:-target/release/norn}
PYTHON=${PYTHON:-python3}
LOADGEN=${LOADGEN:-../shared/bench/loadgen.py}
LINES=${LINES:-1600000}
RUNS=${RUNS:-3}
W=$(mktemp -d /tmp/frontendbench.XXXX)
read -r P_ETCD P_PEER P_I P_IG P_F P_FG P_Q0 P_Q1 P_R < <(free_ports 9)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
start_etcd "$W" "$P_ETCD" "$P_PEER"
LIM="--limits.ingestion-rate-mb=100000 --limits.ingestion-burst-size-mb=100000 --limits.per-stream-rate-limit=10GB --limits.per-stream-rate-limit-burst=10GB --limits.max-query-series=100000 --limits.max-entries-limit-per-query=100000"
COMMON="--ring.store=etcd --ring.etcd.endpoints=127.0.0.1:$P_ETCD --replication-factor=1 --storage.backend=filesystem --storage.filesystem.dir=$W/chunks $LIM ${EXTRA:-}"
$BIN $COMMON --target=distributor,ingester --instance.id=ingester-0 --data.dir=$W/ing --http.addr=127.0.0.1:$P_I --grpc.addr=127.0.0.1:$P_IG --ingester.wal.sync=never >"$W/ing.log" 2>&1 &
$BIN $COMMON --target=query-frontend --instance.id=frontend-0 --data.dir=$W/fe --http.addr=127.0.0.1:$P_F --grpc.addr=127.0.0.1:$P_FG >"$W/fe.log" 2>&1 &
qpids=()
for i in 0 1; do
  port=$(eval echo \$P_Q$i)
  $BIN $COMMON --target=querier --instance.id=querier-$i --data.dir=$W/q$i --http.addr=127.0.0.1:$port --frontend-worker.frontend-address=127.0.0.1:$P_FG >"$W/q$i.log" 2>&1 &
  qpids+=($!)
done
$BIN $COMMON --target=querier --instance.id=querier-alone --data.dir=$W/qr --http.addr=127.0.0.1:$P_R >"$W/qr.log" 2>&1 &
rpid=$!
for port in $P_I $P_F $P_Q0 $P_Q1 $P_R; do
  until curl -sf http://127.0.0.1:$port/ready >/dev/null; do sleep 0.2; done
done
until curl -sf http://127.0.0.1:$P_F/metrics | grep -q '^norn_query_frontend_connected_queriers 2'; do sleep 0.2; done

NOW=$(date +%s)
T0=$((NOW - 26 * 3600))
# loadgen gives every one of its 160 streams a line every STEP_MS to 1.25 * STEP_MS (1.125 on
# average) from T0: the last line lands about now, none in the future (those would be refused).
STEP_MS=$((26 * 3600 * 1000 * 160 * 8 / 9 / LINES))
"$PYTHON" "$LOADGEN" push --url http://127.0.0.1:$P_I --lines "$LINES" --t0 "$T0" --step-ms "$STEP_MS" --workers 2
curl -sf -X POST "http://127.0.0.1:$P_I/flush?wait=true"

# Seconds a query_range takes (the body must be a success).
q() { # url query start end step limit
  curl -sf -o "$W/out.json" -w '%{time_total}' -G "$1/loki/api/v1/query_range" --data-urlencode "query=$2" \
    --data-urlencode "start=$3" --data-urlencode "end=$4" --data-urlencode "step=$5" --data-urlencode "limit=$6"
  grep -q '"status":"success"' "$W/out.json"
}
FE=http://127.0.0.1:$P_F
ALONE=http://127.0.0.1:$P_R
STEP=300
END=$(( $(date +%s) / STEP * STEP ))
START=$((END - 24 * 3600))
DASH='sum by (app) (count_over_time({namespace="prod"}[5m]))'
first=$(q $FE "$DASH" $START $END $STEP 100)
best=999
for i in $(seq 1 5); do
  t=$(q $FE "$DASH" $START $END $STEP 100)
  best=$(python3 -c "print(min($best, $t))")
done
echo "dashboard 24h step 5m through the frontend: first ${first}s, repeat (fastest of 5) ${best}s, speedup $(python3 -c "print(round($first / $best, 1))")x"
alone=999
for i in $(seq 1 $RUNS); do
  t=$(q $ALONE "$DASH" $START $END $STEP 100); alone=$(python3 -c "print(min($alone, $t))")
done
echo "dashboard 24h step 5m on a lone querier: fastest of $RUNS ${alone}s"

NEEDLE='{cluster="east"} |= "trace_id=00000000deadbeef"'
fe=999; lone=999
for i in $(seq 1 $RUNS); do
  query="$NEEDLE != \"no-such-line-$i-$RANDOM\""
  t=$(q $FE "$query" $START $END $STEP 100); fe=$(python3 -c "print(min($fe, $t))")
  t=$(q $ALONE "$query" $START $END $STEP 100); lone=$(python3 -c "print(min($lone, $t))")
done
echo "needle over 24h: through the frontend (2 queriers) ${fe}s, lone querier ${lone}s (fastest of $RUNS)"
for p in "${qpids[@]}" $rpid; do
  echo "querier pid $p $(tr '\0' ' ' </proc/$p/cmdline | grep -o -- '--instance.id=[a-z0-9-]*') peak_rss_mb=$(( $(awk '/VmHWM/{print $2}' /proc/$p/status) / 1024 ))"
done
