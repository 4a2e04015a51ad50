#!/usr/bin/env bash
# Storage and scan benchmark (not a test), one table beside ClickHouse's figures from issue 15:
#   1. one process (distributor+ingester+querier, no frontend, so no results cache) pushes LINES
#      loadgen lines (4M, 160 streams, 2h10m ending now) with the WAL on: lines/s, RSS after;
#   2. the loadgen query set from ingester memory (fastest of REPEAT);
#   3. flush to the store (a directory; STORE=s3: a moto S3 server): stored bytes (chunks + index)
#      and the ratio to the raw bytes;
#   4. that process stops; a querier alone (store only) answers each query once in a fresh
#      process with the page cache dropped where the machine allows (cold), then the whole set
#      fastest of REPEAT (warm); answers are compared with the memory ones by loadgen's digests.
# Needs a release build (cargo build --release), etcd, python3 with cramjam for loadgen.py.
# BIN, PYTHON, LOADGEN, LINES, REPEAT, STORE (filesystem or s3), MOTO (moto_server), EXTRA (more
# norn flags for every process) override; KEEP=1
# keeps the work directory (logs, results).
set -euo pipefail
. "$(dirname "$0")/bench-lib.sh"
BIN=${BIN:-target/release/norn}
PYTHON=${PYTHON:-python3}
LOADGEN=${LOADGEN:-../shared/bench/loadgen.py}
LINES=${LINES:-4000000}
REPEAT=${REPEAT:-3}
W=$(mktemp -d /tmp/storagebench.XXXX)
read -r P_ETCD P_PEER P_I P_IG P_Q P_S3 < <(free_ports 6)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf "$W"' EXIT
start_etcd "$W" "$P_ETCD" "$P_PEER"
LIM="--limits.ingestion-rate-mb=100000 --limits.ingestion-burst-size-mb=100000 --limits.per-stream-rate-limit=10GB --limits.per-stream-rate-limit-burst=10GB --limits.max-query-series=100000"
STORE=${STORE:-filesystem}
if [ "$STORE" = s3 ]; then
  ${MOTO:-moto_server} -H 127.0.0.1 -p "$P_S3" >"$W/moto.log" 2>&1 &
  until curl -s -o /dev/null "http://127.0.0.1:$P_S3/"; do sleep 0.2; done
  curl -sf -X PUT "http://127.0.0.1:$P_S3/norn-bench" >/dev/null
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true
  STORAGE="--storage.backend=s3 --storage.s3.endpoint=http://127.0.0.1:$P_S3 --storage.s3.bucket=norn-bench --storage.s3.region=us-east-1"
else
  STORAGE="--storage.backend=filesystem --storage.filesystem.dir=$W/chunks"
fi
COMMON="--ring.store=etcd --ring.etcd.endpoints=127.0.0.1:$P_ETCD --replication-factor=1 $STORAGE $LIM ${EXTRA:-}"
ready() { until curl -sf "http://127.0.0.1:$1/ready" >/dev/null; do sleep 0.1; done; }

$BIN $COMMON --target=distributor,ingester,querier --instance.id=ingester-0 --data.dir=$W/ing \
  --http.addr=127.0.0.1:$P_I --grpc.addr=127.0.0.1:$P_IG >"$W/ing.log" 2>&1 &
ipid=$!
ready $P_I

NOW=$(date +%s)
SPAN=7800
T0=$((NOW - SPAN))
# loadgen gives each of its 160 streams a line every STEP_MS to 1.25 * STEP_MS (1.125 on average)
# from T0: the last line lands about now, none in the future.
STEP_MS=$((SPAN * 1000 * 160 * 8 / 9 / LINES))
"$PYTHON" "$LOADGEN" push --url http://127.0.0.1:$P_I --lines "$LINES" --t0 "$T0" --step-ms "$STEP_MS" --workers 2 >"$W/push.json"
awk '/VmRSS/{print $2}' /proc/$ipid/status >"$W/rss_kb"
awk '/VmHWM/{print $2}' /proc/$ipid/status >"$W/hwm_kb"
END=$((NOW + 60))
"$PYTHON" "$LOADGEN" query --url http://127.0.0.1:$P_I --start $T0 --end $END --step 60 --repeat "$REPEAT" >"$W/memory.json"

curl -sf -X POST "http://127.0.0.1:$P_I/flush?wait=true"
kill -TERM $ipid
wait $ipid || true
if [ "$STORE" = s3 ]; then
  # The sum of the bucket's object sizes (ListObjectsV2, 1000 keys a page).
  python3 - "http://127.0.0.1:$P_S3/norn-bench" >"$W/stored" <<'EOF'
import re, sys, urllib.parse, urllib.request
total, token = 0, None
while True:
    q = {"list-type": "2"} | ({"continuation-token": token} if token else {})
    body = urllib.request.urlopen(sys.argv[1] + "?" + urllib.parse.urlencode(q)).read().decode()
    total += sum(int(x) for x in re.findall(r"<Size>(\d+)</Size>", body))
    m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
    if not m:
        break
    token = m.group(1)
print(total)
EOF
else
  du -sb "$W/chunks" | cut -f1 >"$W/stored"
fi

# The queries, one per line: name<TAB>query.
"$PYTHON" - "$LOADGEN" >"$W/queries.tsv" <<'EOF'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("loadgen", sys.argv[1])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
for name, q, _ in m.QUERIES:
    print(f"{name}\t{q}")
EOF

# The querier reads an empty ring of its own: the stopped ingester keeps its place in the ring
# (its tokens survive a restart), and a querier would wait for its answers.
start_querier() {
  $BIN $COMMON --ring.prefix=storeonly/ --target=querier --instance.id=querier-0 --data.dir=$W/q --http.addr=127.0.0.1:$P_Q >>"$W/q.log" 2>&1 &
  qpid=$!
  ready $P_Q
}
dropped=no
: >"$W/cold.tsv"
while IFS=$'\t' read -r name query; do
  sync
  if echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then dropped=yes; fi
  start_querier
  secs=$(curl -sSf -o "$W/out.json" -w '%{time_total}' -G "http://127.0.0.1:$P_Q/loki/api/v1/query_range" \
    -H 'X-Scope-OrgID: bench' --data-urlencode "query=$query" --data-urlencode "start=${T0}000000000" \
    --data-urlencode "end=${END}000000000" --data-urlencode step=60 --data-urlencode limit=1000 \
    --data-urlencode direction=forward)
  grep -q '"status":"success"' "$W/out.json"
  printf '%s\t%s\n' "$name" "$secs" >>"$W/cold.tsv"
  kill -TERM $qpid
  wait $qpid || true
done <"$W/queries.tsv"
start_querier
"$PYTHON" "$LOADGEN" query --url http://127.0.0.1:$P_Q --start $T0 --end $END --step 60 --repeat "$REPEAT" >"$W/warm.json"
qhwm=$(awk '/VmHWM/{print $2}' /proc/$qpid/status)

"$PYTHON" - "$W" "$dropped" "$qhwm" "$STORE" <<'EOF'
import json, sys
w, dropped, qhwm, store = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
push = json.load(open(f"{w}/push.json"))
mem, warm = json.load(open(f"{w}/memory.json")), json.load(open(f"{w}/warm.json"))
cold = dict(l.rstrip("\n").split("\t") for l in open(f"{w}/cold.tsv"))
stored = int(open(f"{w}/stored").read())
rss, hwm = int(open(f"{w}/rss_kb").read()) // 1024, int(open(f"{w}/hwm_kb").read()) // 1024
ch = {"needle": 609, "count_over_time": 79, "bytes_rate": 110, "unwrap_quantile": 155, "topk": 613}
raw = push["raw_mb"] * 1e6
print(f"| figure | Norn | ClickHouse |\n|---|---|---|")
print(f"| stored bytes in the {store} store (chunks + index), ratio to {push['raw_mb']:.0f} MB raw | {stored / 1e6:.1f} MB, {raw / stored:.2f}x | 157 MB, 3.7x |")
print(f"| push, {push['lines']:,} lines, WAL on | {push['lines_per_s']:,} lines/s, p99 {push['push_p99_ms']} ms, {push['errors']} errors | - |")
print(f"| RSS after the push (peak) | {rss} MB ({hwm} MB) | - |")
print(f"| store-only querier peak RSS | {qhwm // 1024} MB | - |")
print(f"\n| query (ms) | memory | warm store | cold store | same answer | ClickHouse |\n|---|---|---|---|---|---|")
for name, m in mem.items():
    wv = warm[name]
    same = "yes" if m["result"] == wv["result"] else f"NO: {m['result']} vs {wv['result']}"
    print(f"| {name} | {m['min_ms']} | {wv['min_ms']} | {float(cold[name]) * 1000:.1f} | {same} | {ch.get(name, '-')} |")
print(f"\ncold = first query of a fresh store-only querier, page cache dropped: {dropped}")
EOF
