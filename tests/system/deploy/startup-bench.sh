#!/usr/bin/env bash
# Startup time and memory of an overlay-switchd build, for choosing between the self-contained JIT
# publish and a NativeAOT one:
#   tests/system/deploy/startup-bench.sh PATH/TO/overlay-switchd [runs]      (as root)
# Each run starts the switch in a fresh namespace with one network, one vhost-user port and a
# VXLAN underlay, under a parent named "systemd" with NOTIFY_SOCKET (as the unit runs it), and
# measures the time from exec to READY=1 (ports open, dataplane and status socket up), then the
# resident memory (VmRSS) and its peak (VmHWM) 3 s later. Prints the median of the runs.
set -euo pipefail
exe=$(realpath "${1:?overlay-switchd executable}")
runs=${2:-5}
work=$(mktemp -d /tmp/s5deploy-startup.XXXXXX)
ns=s5depsb$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link add ul0 type veth peer name ul1
ip -n "$ns" addr add 10.232.0.1/24 dev ul0
ip -n "$ns" link set ul0 up && ip -n "$ns" link set ul1 up && ip -n "$ns" link set lo up
ln -s "$(command -v bash)" "$work/systemd"
cat >"$work/switch.json" <<JSON
{ "Switch": { "HostName": "bench", "SocketDirectory": "$work/run", "StateDirectory": "$work/state",
  "Underlay": { "VtepV4": "10.232.0.1", "Mtu": 1500 },
  "Networks": [ { "Vni": 100, "Mtu": 1450 } ],
  "Ports": [ { "Name": "vm-a", "Role": "Server", "Vni": 100, "Mac": "52:54:00:00:00:01", "Ipv4": ["10.0.0.1"] } ] } }
JSON
results=()
for run in $(seq "$runs"); do
  rm -rf "$work/run" "$work/notify" "$work/notify.sock"
  socat -u "UNIX-RECV:$work/notify.sock" "OPEN:$work/notify,creat,append" </dev/null >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do [[ -S $work/notify.sock ]] && break; sleep 0.1; done
  start=$(date +%s%N)
  NOTIFY_SOCKET=$work/notify.sock "$work/systemd" -c '"$@" & echo $! >"$0"; wait $!' "$work/pid" \
    ip netns exec "$ns" "$exe" --config "$work/switch.json" >"$work/switch.log" 2>&1 &
  pids+=($!)
  until grep -q READY=1 "$work/notify" 2>/dev/null; do
    sleep 0.005
    (($(date +%s%N) - start < 120000000000)) || { cat "$work/switch.log"; echo "no READY=1 in 120 s" >&2; exit 1; }
  done
  ready_ms=$((($(date +%s%N) - start) / 1000000))
  pid=$(cat "$work/pid")
  pids+=("$pid")
  sleep 3
  rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
  kill "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  results+=("$ready_ms $rss $hwm")
  echo "run $run: READY=1 after $ready_ms ms, VmRSS $((rss / 1024)) MiB, VmHWM $((hwm / 1024)) MiB"
done
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "median of $runs: READY=1 after $(printf '%s\n' "${results[@]}" | cut -d' ' -f1 | median) ms," \
  "VmRSS $(($(printf '%s\n' "${results[@]}" | cut -d' ' -f2 | median) / 1024)) MiB," \
  "VmHWM $(($(printf '%s\n' "${results[@]}" | cut -d' ' -f3 | median) / 1024)) MiB ($exe)"
