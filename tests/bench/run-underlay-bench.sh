#!/usr/bin/env bash
# Underlay benchmark: throughput between guests on two hosts across a VXLAN tunnel over a routed
# underlay (hosts in different subnets joined by a router namespace), in one run:
#   - overlay-switchd on each host, guests are namespaces on tap ports (iperf3 TCP and UDP), once
#     with the taps' offloads off (one MTU-sized frame per read/write, the switch before offloads)
#     and once with them on (64 KiB TCP frames segmented by the switch, segments coalesced for the
#     receiving guest: Switch:TapOffloads),
#   - the Linux kernel's vxlan device doing the same in the same topology: each host namespace
#     bridges vx0 with a veth to its guest namespace (iperf3 TCP and UDP), once with the kernel's
#     offloads as they come (TSO/GSO super-packets through veth, bridge and vxlan) and once with
#     them off on the guests' veths (one packet at a time, as the tap guests of the switch send),
#   - unless NO_TESTPMD=1: DPDK testpmd with a virtio-user port on a vhost-user port of each host's
#     switch, io forwarding with 512 frames in flight (--tx-first): they circle port A -> switch 1
#     -> VXLAN -> router -> switch 2 -> port B -> testpmd -> port A, testpmd alone on core 0, both
#     switches (and the kernel's underlay work they cause) on core 1. Prints frames per second
#     delivered to port B: encap, underlay and decap per frame.
# Both hosts, the router and the guests share this machine's cores; the figures compare the
# datapaths under the same conditions, not what separate machines would reach.
# A UDP blast (-b 0) loses what the slowest stage cannot take; for overlay-switchd the counters
# printed under its row show where (the sending guest's tap queue, the switches, host 2's socket).
# Needs root, iproute2, iperf3, ethtool, python3; testpmd also dpdk-testpmd and hugepages (set up here).
# Usage: tests/bench/run-underlay-bench.sh [seconds-per-run]
#   KEEP=1 keeps the logs; NO_IPERF=1 / NO_TESTPMD=1 skip a part.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-8}
p="oub$$"  # prefix of every namespace and file this run makes
work=$(mktemp -d "/tmp/overlay-underlay-bench.XXXXXX")
daemon=switch/OverlaySwitch.Switch.Host/bin/Release/net10.0/overlay-switchd.dll
pids=()
namespaces=()
tap_offloads=true

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for ns in "${namespaces[@]}"; do
    ip -n "$ns" link del eth0 2>/dev/null || true # persistent taps
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf /var/run/dpdk/"$p"-* 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "logs in $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

for tool in ip iperf3 ethtool python3; do command -v "$tool" >/dev/null || { echo "needs $tool (./test.sh system installs it)" >&2; exit 1; }; done
dotnet build switch/OverlaySwitch.Switch.Host -c Release --nologo -v quiet >/dev/null

netns() { ip netns add "$1"; namespaces+=("$1"); ip -n "$1" link set lo up; }

# topology: router + host1 (10.78.1.1/24) + host2 (10.78.2.1/24), each host's "ul0" a veth to the router
topology() {
  netns "$p-rt"
  ip netns exec "$p-rt" sysctl -qw net.ipv4.ip_forward=1
  for h in 1 2; do
    netns "$p-h$h"
    ip link add ul0 netns "$p-h$h" type veth peer name "rt$h" netns "$p-rt"
    ip -n "$p-h$h" addr add "10.78.$h.1/24" dev ul0
    ip -n "$p-rt" addr add "10.78.$h.254/24" dev "rt$h"
    ip -n "$p-h$h" link set ul0 up
    ip -n "$p-rt" link set "rt$h" up
    ip -n "$p-h$h" route add default via "10.78.$h.254"
  done
}

teardown() {
  stop_from 0
  pids=()
  for ns in "${namespaces[@]}"; do
    ip -n "$ns" link del eth0 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  namespaces=()
}

stop_from() {
  for pid in "${pids[@]:$1}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 20); do
    local alive=0
    for pid in "${pids[@]:$1}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.25
  done
  for pid in "${pids[@]:$1}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

mac() { printf '02:00:00:00:0b:%02x' "$1"; }

# switch HOST PORTS-JSON REMOTES-JSON [CPUS]: overlay-switchd of host HOST (1 or 2) in its namespace
switch() {
  local h=$1 ports=$2 remotes=$3 cpus=${4:-} peer=$((3 - $1))
  mkdir -p "$work/run$h"
  cat >"$work/switch$h.json" <<JSON
{ "Switch": { "HostName": "bench$h", "SocketDirectory": "$work/run$h", "DataplaneThreads": 1, "DataplaneCpus": [ $cpus ],
  "VhostUser": { "UnsealedMemory": "TrustPrivilegedFrontends" }, "TapOffloads": $tap_offloads,
  "Underlay": { "VtepV4": "10.78.$h.1", "Mtu": 1500 },
  "Vteps": [ { "Address": "10.78.$peer.1", "Mtu": 1500 } ],
  "Networks": [ { "Vni": 100, "Mtu": 1450 } ],
  "Ports": [ $ports ], "RemoteEndpoints": [ $remotes ] } }
JSON
  ip netns exec "$p-h$h" dotnet "$daemon" --config "$work/switch$h.json" >"$work/switch$h.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [ -S "$work/run$h/overlay-switchd.ctl" ] && return 0; sleep 0.1; done
  echo "overlay-switchd on host $h did not start:" >&2
  cat "$work/switch$h.log" >&2
  exit 1
}

# iperf3_run MODE: iperf3 from guest 1 to guest 2 (192.168.100.2); prints "Mbit/s" (tcp) or "Mbit/s pps loss%" (udp)
iperf3_run() {
  local mode=$1 start=${#pids[@]}
  ip netns exec "$p-g2" iperf3 -s -1 -B 192.168.100.2 >"$work/iperf3-server.log" 2>&1 &
  pids+=($!)
  sleep 0.5
  local args=(-c 192.168.100.2 -t "$seconds" -J)
  [ "$mode" = udp ] && args+=(-u -b 0 -l 1400)
  ip netns exec "$p-g1" timeout $((seconds + 20)) iperf3 "${args[@]}" >"$work/iperf3-$mode.json" 2>"$work/iperf3-$mode.err" || true
  stop_from "$start"
  /usr/bin/python3 - "$work/iperf3-$mode.json" "$mode" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    end = d["end"]
    if sys.argv[2] == "tcp":
        print(f'{end["sum_received"]["bits_per_second"] / 1e6:.0f}')
    else:
        s = end["sum"]
        seconds = s["seconds"] or 1
        received = s["packets"] - s["lost_packets"]
        print(f'{s["bits_per_second"] * (1 - s["lost_percent"] / 100) / 1e6:.0f} {received / seconds:.0f} {s["lost_percent"]:.1f}')
except Exception as e:
    print("error" if sys.argv[2] == "tcp" else "error - -")
PY
}

guests() {
  for g in 1 2; do
    netns "$p-g$g"
    ip netns exec "$p-g$g" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
  done
}

# overlay: overlay-switchd on both hosts, tap guests with MTU 1500 (they learn 1450 from the switch)
overlay_setup() {
  topology
  guests
  for h in 1 2; do
    local o=$((3 - h))
    switch "$h" \
      "{ \"Name\": \"g$h\", \"Kind\": \"Tap\", \"Device\": \"eth0\", \"Namespace\": \"$p-g$h\", \"Vni\": 100, \"Mac\": \"$(mac $h)\", \"Ipv4\": [\"192.168.100.$h\"] }" \
      "{ \"Name\": \"g$o\", \"Vni\": 100, \"Mac\": \"$(mac $o)\", \"Ipv4\": [\"192.168.100.$o\"], \"Vtep\": \"10.78.$o.1\" }"
  done
  for h in 1 2; do
    for _ in $(seq 50); do ip -n "$p-g$h" link show eth0 >/dev/null 2>&1 && break; sleep 0.1; done
    ip -n "$p-g$h" link set eth0 address "$(mac $h)"
    ip -n "$p-g$h" addr add "192.168.100.$h/24" dev eth0
    ip -n "$p-g$h" link set eth0 up
  done
  ip netns exec "$p-g1" ping -c 2 -i 0.2 -W 2 192.168.100.2 >/dev/null || { echo "overlay: guests cannot reach each other" >&2; exit 1; }
}

# kernel: vx0 bridged with a veth to the guest in each host namespace; guest MTU 1450 (the kernel
# bridge does not tell guests the overlay MTU). OFFLOAD=off turns TSO/GSO/checksum offload off on
# the guests' veths, so the kernel handles one MTU-sized packet at a time as the tap guests do.
kernel_setup() {
  local offload=$1
  topology
  guests
  for h in 1 2; do
    local o=$((3 - h)) ns="$p-h$h" g="$p-g$h"
    ip -n "$ns" link add vx0 type vxlan id 100 local "10.78.$h.1" dstport 4789 nolearning
    ip -n "$ns" link add br0 type bridge
    ip link add eth0 netns "$g" type veth peer name "gv$h" netns "$ns"
    ip -n "$ns" link set vx0 master br0 mtu 1450
    ip -n "$ns" link set "gv$h" master br0 mtu 1450
    ip -n "$g" link set eth0 address "$(mac $h)" mtu 1450
    ip -n "$g" addr add "192.168.100.$h/24" dev eth0
    for dev in vx0 "gv$h" br0; do ip -n "$ns" link set "$dev" up; done
    ip -n "$g" link set eth0 up
    bridge -n "$ns" fdb append 00:00:00:00:00:00 dev vx0 dst "10.78.$o.1"
    bridge -n "$ns" fdb append "$(mac $o)" dev vx0 dst "10.78.$o.1"
    if [ "$offload" = off ]; then
      ip netns exec "$g" ethtool -K eth0 tso off gso off gro off tx off >/dev/null 2>&1 || true
    fi
  done
  for _ in $(seq 20); do ip netns exec "$p-g1" ping -c 1 -W 1 192.168.100.2 >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "kernel vxlan: guests cannot reach each other" >&2
  exit 1
}

# stat_of NS COUNTER: a counter of eth0 in namespace NS (ip netns exec mounts that namespace's /sys)
stat_of() { ip netns exec "$1" cat "/sys/class/net/eth0/statistics/$2"; }

# switch_summary HOST: one line of host HOST's switch status (ports, underlay, drops), for the logs
switch_summary() {
  /usr/bin/python3 - "$work/run$1/overlay-switchd.ctl" "$1" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"status\n")
d = json.loads(b"".join(iter(lambda: s.recv(65536), b"")))
ports = "; ".join(f'{p["name"]} tx {p["transmitPackets"]} rx {p["receivePackets"]} nobuf {p["receiveNoBuffers"]}' for p in d["ports"])
under = sum(u["receivedPackets"] for u in d["underlay"])
w = d["workers"]
sent = sum(x["sentPackets"] for x in w); errors = sum(x["sendErrors"] for x in w); full = sum(x["sendQueueFull"] for x in w)
sleeps = sum(x["sleeps"] for x in w); polled = sum(x["framesPolled"] for x in w)
drops = ", ".join(f"{k}={v}" for k, v in d["drops"].items() if v) or "none"
print(f"switch {sys.argv[2]}: {ports}; underlay rx {under} sent {sent} sendErrors {errors} sendQueueFull {full}; worker sleeps {sleeps} frames polled {polled}; drops: {drops}")
PY
}

# testpmd: a vhost-user port on each host's switch, both switches' dataplanes on core 1
testpmd_setup() {
  topology
  local mac1=52:54:00:00:0b:01 mac2=52:54:00:00:0b:02
  for h in 1 2; do
    local o=$((3 - h)) m o_m
    [ $h = 1 ] && { m=$mac1; o_m=$mac2; } || { m=$mac2; o_m=$mac1; }
    switch "$h" \
      "{ \"Name\": \"vm$h\", \"Vni\": 100, \"Mac\": \"$m\", \"Ipv4\": [\"192.168.100.$h\"] }" \
      "{ \"Name\": \"vm$o\", \"Vni\": 100, \"Mac\": \"$o_m\", \"Ipv4\": [\"192.168.100.$o\"], \"Vtep\": \"10.78.$o.1\" }" 1
  done
  for h in 1 2; do for _ in $(seq 50); do [ -S "$work/run$h/vm$h.sock" ] && break; sleep 0.1; done; done
}

# testpmd_loop SIZE: one testpmd (forwarding on core 0) with port A on switch 1 and port B on
# switch 2 in io forwarding; 512 frames of SIZE bytes (without CRC) injected towards B's MAC
# circle A -> tunnel -> B -> A. Prints the median Rx-pps of port B.
testpmd_loop() {
  local size=$1 start=${#pids[@]}
  dpdk-testpmd -l 0,1 --main-lcore 1 --no-pci --single-file-segments --in-memory --file-prefix="$p-loop" -m 512 \
    --vdev "net_virtio_user0,path=$work/run1/vm1.sock,queues=1,queue_size=1024,mac=52:54:00:00:0b:01" \
    --vdev "net_virtio_user1,path=$work/run2/vm2.sock,queues=1,queue_size=1024,mac=52:54:00:00:0b:02" -- \
    --forward-mode=io --tx-first --burst=512 --txpkts="$size" --tx-ip=192.168.100.1,192.168.100.2 \
    --eth-peer=0,52:54:00:00:0b:02 --eth-peer=1,52:54:00:00:0b:02 --stats-period 1 --nb-cores=1 \
    --rxd=1024 --txd=1024 --total-num-mbufs=16384 >"$work/loop-$size.log" 2>&1 &
  pids+=($!)
  sleep $((seconds + 3))
  for h in 1 2; do switch_summary "$h" >>"$work/loop-$size.switches"; done
  # Port 1 (B) receives what crossed the tunnel: the second Rx-pps figure of each sample.
  tr '\033' '\n' <"$work/loop-$size.log" | grep -o 'Rx-pps: *[0-9]*' | awk '{print $2}' | awk 'NR % 2 == 0' | tail -n +3 | sort -n |
    awk '{a[NR]=$1} END {if (NR == 0) print 0; else print a[int((NR + 1) / 2)]}'
  stop_from "$start"
}

printf '%-44s %12s %14s %8s\n' "guest 1 -> guest 2 across the tunnel" "TCP Mbit/s" "UDP 1400 B" "UDP loss"
row() { printf '%-44s %12s %14s %8s\n' "$@"; }

if [ -z "${NO_IPERF:-}" ]; then
 for tap_offloads in false true; do
  overlay_setup
  tcp=$(iperf3_run tcp); read -r udp pps loss <<<"$(iperf3_run udp)"
  row "overlay-switchd, tap guests, offloads $([ $tap_offloads = true ] && echo on || echo off)" "$tcp" "$udp Mbit/s" "$loss%"
  echo "  ($pps UDP datagrams/s received)"
  # Where the UDP losses are: the sending guest's tap queue, the switches, host 2's VXLAN socket.
  {
    for h in 1 2; do switch_summary "$h"; done
    echo "guest 1 eth0: tx $(stat_of "$p-g1" tx_packets) dropped $(stat_of "$p-g1" tx_dropped)"
    echo "host 2 UDP: $(ip netns exec "$p-h2" nstat -az UdpRcvbufErrors UdpInErrors | awk '/Udp/ {printf "%s=%s ", $1, $2}')"
    echo "guest 2 eth0: rx $(stat_of "$p-g2" rx_packets) dropped $(stat_of "$p-g2" rx_dropped)"
  } >"$work/overlay-counters.txt"
  sed 's/^/  /' "$work/overlay-counters.txt"
  teardown
 done

  kernel_setup on
  tcp=$(iperf3_run tcp); read -r udp pps loss <<<"$(iperf3_run udp)"
  row "kernel vxlan + bridge + veth (offloads on)" "$tcp" "$udp Mbit/s" "$loss%"
  echo "  ($pps UDP datagrams/s received)"
  teardown

  kernel_setup off
  tcp=$(iperf3_run tcp); read -r udp pps loss <<<"$(iperf3_run udp)"
  row "kernel vxlan + bridge + veth (offloads off)" "$tcp" "$udp Mbit/s" "$loss%"
  echo "  ($pps UDP datagrams/s received)"
  teardown
fi

if [ -z "${NO_TESTPMD:-}" ] && command -v dpdk-testpmd >/dev/null; then
  [ "$(cat /proc/sys/vm/nr_hugepages)" -ge 1024 ] || echo 1024 >/proc/sys/vm/nr_hugepages
  mountpoint -q /dev/hugepages || mount -t hugetlbfs none /dev/hugepages
  echo
  echo "testpmd virtio-user (io, 512 frames circling, core 0) -> switch 1 -> VXLAN -> switch 2 -> testpmd (switches on core 1)"
  printf '%-10s %16s\n' frame "frames/s at B"
  for size in 60 1464; do
    testpmd_setup
    printf '%-10s %16s\n' "$((size + 4))B" "$(testpmd_loop "$size")"
    teardown
  done
fi
