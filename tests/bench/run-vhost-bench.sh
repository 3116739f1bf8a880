#!/usr/bin/env bash
# vhost-user switching benchmark: DPDK testpmd (virtio-user) sends 64 B and 1518 B frames with
# txonly into port A of a backend, which forwards them to port B, where a second testpmd counts
# them with rxonly. Two backends in the same run, under the same pinning:
#   - OverlaySwitch's overlay-switchd (port A -> port B in one VNI, through the overlay core),
#   - DPDK's own vhost backend (net_vhost, io forwarding port0 -> port1), the reference.
# The backend's forwarding thread gets core $BACKEND_CORE; the sender and the receiver share the
# other core. Prints received packets per second (median of the steady-state samples) and the
# ratio; then the loop test below, which counts both directions. Needs root, hugepages (set up
# here) and dpdk-testpmd.
# Usage: [RUNS=3] [LOOP_ONLY=1] [BASELINE_DLL=/path/overlay-switchd.dll] tests/bench/run-vhost-bench.sh [seconds-per-run]
# BASELINE_DLL adds another build of the switch (e.g. before a change) as a third backend, measured
# in the same runs. The switch's worker is pinned with Switch:DataplaneCpus, testpmd with -l.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-12}
runs=${RUNS:-3}
backend_core=${BACKEND_CORE:-1}
gen_core=${GEN_CORE:-0}
work=$(mktemp -d /tmp/overlay-vhost-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] && echo "logs in $work" >&2 || rm -rf "$work"
  rmdir /var/run/dpdk/ovb-* 2>/dev/null || true
}
trap cleanup EXIT

[ "$(cat /proc/sys/vm/nr_hugepages)" -ge 1024 ] || echo 1024 > /proc/sys/vm/nr_hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs none /dev/hugepages
dotnet build switch/OverlaySwitch.Switch.Host -c Release --nologo -v quiet >/dev/null

mac_a=52:54:00:00:00:01 mac_b=52:54:00:00:00:02
# The sender and the receiver time-share one core: the receiver's ring must hold what arrives
# while it is descheduled (a few ms), or the figure measures the scheduler, not the backend.
ring=${RING:-8192}

# testpmd NAME SOCKET MAC MODE [args...]: a virtio-user testpmd; its forwarding lcore is $gen_core.
testpmd() {
  local name=$1 socket=$2 mac=$3 mode=$4; shift 4
  dpdk-testpmd -l "$gen_core,$backend_core" --main-lcore "$backend_core" --no-pci --single-file-segments \
    --file-prefix="ovb-$name-$$" -m 512 \
    --vdev "net_virtio_user0,path=$socket,queues=1,queue_size=$ring,mac=$mac" -- \
    --forward-mode="$mode" --stats-period 1 --nb-cores=1 --rxd=$ring --txd=$ring --total-num-mbufs=$((4 * ring)) "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}

# median of the Rx-pps samples after the first two (ramp-up) of a testpmd log
median_rx_pps() {
  tr '\033' '\n' <"$1" | grep -o 'Rx-pps: *[0-9]*' | awk '{print $2}' | tail -n +3 | sort -n |
    awk '{a[NR]=$1} END {if (NR == 0) print 0; else print a[int((NR + 1) / 2)]}'
}

# start_backend BACKEND SOCK_A SOCK_B: overlay-switchd or DPDK's vhost backend, forwarding on $backend_core
start_backend() {
  local backend=$1 sock_a=$2 sock_b=$3
  if [ "$backend" != dpdk ]; then
    cat >"$work/switch.json" <<JSON
{ "Switch": { "HostName": "bench", "SocketDirectory": "$work/run", "DataplaneThreads": 1, "DataplaneCpus": [$backend_core],
  "VhostUser": { "UnsealedMemory": "TrustPrivilegedFrontends" },
  "Networks": [ { "Vni": 100, "Mtu": 8950 } ],
  "Ports": [ { "Name": "vm-a", "Vni": 100, "Mac": "$mac_a", "Ipv4": ["10.0.0.1"] },
             { "Name": "vm-b", "Vni": 100, "Mac": "$mac_b", "Ipv4": ["10.0.0.2"] } ] } }
JSON
    local dll=switch/OverlaySwitch.Switch.Host/bin/Release/net10.0/overlay-switchd.dll
    [ "$backend" = baseline ] && dll=$BASELINE_DLL
    dotnet "$dll" --config "$work/switch.json" >"$work/switch.log" 2>&1 &
    pids+=($!) backend_pid=$!
  else
    dpdk-testpmd -l "$gen_core,$backend_core" --main-lcore "$gen_core" --no-pci --in-memory --file-prefix="ovb-vhost-$$" -m 512 \
      --vdev "net_vhost0,iface=$sock_a,queues=1" --vdev "net_vhost1,iface=$sock_b,queues=1" -- \
      --forward-mode=io --nb-cores=1 --stats-period 1 --total-num-mbufs=16384 >"$work/vhost.log" 2>&1 &
    pids+=($!) backend_pid=$!
  fi
  for _ in $(seq 50); do [ -S "$sock_a" ] && [ -S "$sock_b" ] && break; sleep 0.2; done
}

# run BACKEND SIZE: txonly into A, rxonly on B; prints the receiver's median packets per second
run() {
  local backend=$1 size=$2
  rm -rf "$work/run" && mkdir -p "$work/run"
  local sock_a=$work/run/vm-a.sock sock_b=$work/run/vm-b.sock start=${#pids[@]}
  start_backend "$backend" "$sock_a" "$sock_b"
  testpmd rx "$sock_b" "$mac_b" rxonly
  sleep 2
  testpmd tx "$sock_a" "$mac_a" txonly --txpkts="$((size - 4))" --tx-ip=10.0.0.1,10.0.0.2 --eth-peer=0,$mac_b
  sleep "$seconds"
  median_rx_pps "$work/rx.log"
  stop_from "$start"
}

# loop BACKEND SIZE: one testpmd on its own core with two virtio-user ports, each forwarding to
# itself (--port-topology=loop) with 5tswap (MACs, IPs and UDP ports swapped): a frame A sends to
# B comes back out of B addressed to A, so it circles A -> backend -> B -> testpmd -> B -> backend
# -> A ..., every hop carrying its sending port's own addresses (the switch's port security passes
# it), and the backend on the other core is the only thing that switches them; nothing time-shares
# a core. testpmd's --tx-ip is one pair for all ports, so the frames are injected from port A only
# (valid for A): testpmd runs interactively, forwards port A alone for `start tx_first 2` (2 bursts
# of 512, so 1024 frames in flight for either backend, the same frames), then both ports without
# flushing what waits in B's receive ring (--no-flush-rx). Prints the frames the backend delivered
# per second, both directions (Rx-pps of both ports added, sampled with `show port stats all`).
loop() {
  local backend=$1 size=$2
  rm -rf "$work/run" && mkdir -p "$work/run"
  local sock_a=$work/run/vm-a.sock sock_b=$work/run/vm-b.sock start=${#pids[@]}
  start_backend "$backend" "$sock_a" "$sock_b"
  rm -f "$work/loop.in" && mkfifo "$work/loop.in"
  dpdk-testpmd -l "$gen_core,$backend_core" --main-lcore "$backend_core" --no-pci --single-file-segments \
    --file-prefix="ovb-loop-$$" -m 512 \
    --vdev "net_virtio_user0,path=$sock_a,queues=1,queue_size=1024,mac=$mac_a" \
    --vdev "net_virtio_user1,path=$sock_b,queues=1,queue_size=1024,mac=$mac_b" -- -i --no-flush-rx \
    --forward-mode=5tswap --port-topology=loop --burst=512 --txpkts="$((size - 4))" --tx-ip=10.0.0.1,10.0.0.2 \
    --eth-peer=0,$mac_b --eth-peer=1,$mac_a --nb-cores=1 --rxd=1024 --txd=1024 \
    --total-num-mbufs=16384 <"$work/loop.in" >"$work/loop.log" 2>&1 &
  pids+=($!)
  exec {cmd}>"$work/loop.in"
  sleep 2
  echo "set portlist 0" >&$cmd; echo "start tx_first 2" >&$cmd; sleep 0.5
  echo "stop" >&$cmd; echo "set portlist 0,1" >&$cmd; echo "start" >&$cmd
  echo "show port stats all" >&$cmd # resets the Rx-pps baseline
  sleep 1
  [ "$backend" != dpdk ] && switch_counters >"$work/counters.before"
  local ticks0 ticks1
  echo "show port stats all" >&$cmd; ticks0=$(forwarding_ticks "$backend") # the window's first sample
  for _ in $(seq "$seconds"); do sleep 1; echo "show port stats all" >&$cmd; done
  ticks1=$(forwarding_ticks "$backend")
  [ "$backend" != dpdk ] && switch_counters >"$work/counters.after"
  echo "stop" >&$cmd; echo "quit" >&$cmd; exec {cmd}>&-
  # Each sample prints Rx-pps for port 0 then port 1: add them pairwise, skip the first (baseline) pair.
  grep -o 'Rx-pps: *[0-9]*' "$work/loop.log" | awk '{print $2}' | paste -d' ' - - | awk '{print $1 + $2}' | tail -n +3 | sort -n |
    awk '{a[NR]=$1} END {if (NR == 0) print 0; else print a[int((NR + 1) / 2)]}'
  # Frames both ports received over the window (cumulative RX-packets of the window's first and
  # last sample) per second of CPU the backend's forwarding thread got in it: its cost per frame,
  # which holds still when other work on the machine takes the core away part of the time.
  awk '/NIC statistics for port/ {p = 1; next} p && /RX-packets/ {print $2; p = 0}' "$work/loop.log" | paste -d' ' - - |
    awk '{print $1 + $2}' | tail -n +2 | awk -v t=$((ticks1 - ticks0)) -v hz="$(getconf CLK_TCK)" \
      'NR == 1 {first = $1} {last = $1} END {if (t > 0) printf "%.0f\n", (last - first) * hz / t; else print 0}' >"$work/loop.efficiency"
  stop_from "$start"
}

# forwarding_ticks BACKEND: CPU time (clock ticks, user + system) the backend's forwarding thread
# has used: the switch's worker thread (dataplane-0) or DPDK's forwarding lcore (rte-worker-N).
forwarding_ticks() {
  local name=dataplane-0 task
  [ "$1" = dpdk ] && name=rte-worker-$backend_core
  for task in /proc/$backend_pid/task/*; do
    if [ "$(cat "$task/comm" 2>/dev/null)" = "$name" ]; then
      sed 's/.*) //' "$task/stat" | awk '{print $12 + $13}'
      return
    fi
  done
  echo 0
}

# switch_counters: "framesPolled allocatedBytes" of the switch's worker 0, from its status socket
switch_counters() {
  /usr/bin/python3 - "$work/run/overlay-switchd.ctl" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"status\n")
data = b"".join(iter(lambda: s.recv(65536), b""))
w = json.loads(data)["workers"][0]
print(w["framesPolled"], w["allocatedBytes"])
PY
}

stop_from() {
  for pid in "${pids[@]:$1}"; do kill -INT "$pid" 2>/dev/null || true; done
  sleep 2
  for pid in "${pids[@]:$1}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

# median of the numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print 0; else print a[int((NR + 1) / 2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# Every run measures each backend once per frame size, the backends alternating, so load from
# other processes on the machine hits them alike; the tables give the medians over $runs runs.
backends="dpdk overlay${BASELINE_DLL:+ baseline}"
for r in $(seq "$runs"); do
  for size in 64 1518; do
    for b in $backends; do
      [ -n "${LOOP_ONLY:-}" ] || echo "$(run "$b" "$size")" >>"$work/txonly.$b.$size"
      echo "$(loop "$b" "$size")" >>"$work/loop.$b.$size"
      cat "$work/loop.efficiency" >>"$work/cpu.$b.$size"
      if [ "$b" != dpdk ]; then
        paste -d' ' "$work/counters.before" "$work/counters.after" |
          awk '{f = $3 - $1; printf "%.4f\n", (f > 0 ? ($4 - $2) / f : 0)}' >>"$work/alloc.$b.$size"
      fi
    done
    echo "run $r ${size}B loop: $(for b in $backends; do printf '%s %s (%s per cpu-s)  ' "$b" "$(tail -1 "$work/loop.$b.$size")" "$(tail -1 "$work/cpu.$b.$size")"; done)" >&2
  done
done

table() {
  local kind=$1
  printf '%-6s %14s %14s %8s' frame "dpdk vhost" overlayswitch ratio
  [ -n "${BASELINE_DLL:-}" ] && printf ' %14s %8s' "baseline" ratio
  [ "$kind" = loop ] && printf '   %s' "switch B/frame"
  echo
  local unit=pps
  [ "$kind" = cpu ] && unit=f/cpu-s
  for size in 64 1518; do
    local dpdk ours
    dpdk=$(median <"$work/$kind.dpdk.$size") ours=$(median <"$work/$kind.overlay.$size")
    printf '%-6s %14s %14s %8s' "${size}B" "$dpdk $unit" "$ours $unit" "$(ratio "$ours" "$dpdk")"
    if [ -n "${BASELINE_DLL:-}" ]; then
      local base; base=$(median <"$work/$kind.baseline.$size")
      printf ' %14s %8s' "$base $unit" "$(ratio "$base" "$dpdk")"
    fi
    [ "$kind" = loop ] && printf '   %s' "$(sort -n "$work/alloc.overlay.$size" | tail -1)"
    echo
  done
}

if [ -z "${LOOP_ONLY:-}" ]; then
  echo "txonly -> backend -> rxonly (sender and receiver share core $gen_core: receiver-bound on 2 cores); medians of $runs runs"
  table txonly
  echo
fi
echo "loop: one testpmd (5tswap, each port to itself) on core $gen_core, backend alone on core $backend_core; both directions counted; medians of $runs runs"
table loop
echo
echo "loop, frames per second of CPU the backend's forwarding thread got (same runs; steadier on a busy machine)"
table cpu
