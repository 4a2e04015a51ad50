# Shared by the scripts/bench-*.sh benchmarks; sourced, not run.

# Prints N free loopback ports picked by the OS (others use this machine too).
free_ports() {
  python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
[s.bind(("127.0.0.1", 0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

# Starts etcd in the background with its data under DIR/etcd and its log in DIR/etcd.log, and
# waits until it is healthy: start_etcd DIR CLIENT_PORT PEER_PORT.
start_etcd() {
  etcd --data-dir "$1/etcd" --listen-client-urls "http://127.0.0.1:$2" --advertise-client-urls "http://127.0.0.1:$2" \
       --listen-peer-urls "http://127.0.0.1:$3" >"$1/etcd.log" 2>&1 &
  until curl -sf "http://127.0.0.1:$2/health" >/dev/null; do sleep 0.2; done
}
