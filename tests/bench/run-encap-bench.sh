#!/usr/bin/env bash
# VXLAN encapsulation and decapsulation rates of overlay-switchd between a vhost-user port and a
# veth underlay, beside the send-path ceilings of DPDK testpmd on the same veth sink, in one run:
#   encap: testpmd (virtio-user, txonly, core $GEN_CORE) -> vhost-user port -> switch (core
#          $BACKEND_CORE) -> VXLAN -> ul0 (veth) -> the sink namespace, which drops what arrives
#          (a remote VTEP address that is nobody's, forwarding off). Rate: the datagrams the
#          switch's underlay sender handed the kernel per second (its status counters; each
#          segment of a UDP_SEGMENT run counts once).
#   ceilings: testpmd txonly straight onto ul0 through AF_PACKET and AF_XDP (skb mode), pinned to
#          $BACKEND_CORE like the switch: what one core gets through the same veth to the same sink.
#   decap: testpmd in the sink namespace replays VXLAN datagrams from a pcap (net_pcap, endless)
#          onto sk0 through AF_PACKET (core $GEN_CORE); the switch decapsulates them into the
#          vhost-user port, where a testpmd rxonly counts them (Rx-pps).
# The machine is shared, so besides packets per second each row gives the CPU time the switch
# (all its threads; for the ceilings testpmd's) spent per packet, from /proc/PID/task/*/stat:
# that figure does not depend on how much of the core others took. Kernel work done in the
# switch's system calls (and softirq work run on their way out) is in it; work done in ksoftirqd
# is not. Each figure is the median of $RUNS runs. The switch is started per mode: SEND=Gso and Raw of
# this tree's build, AfXdp (Underlay:Mode=AfXdp on ul0: its own XDP program, native on the veth,
# AF_XDP socket in copy mode; the rate counts what the sender put on the TX ring plus any socket
# fallback), and, with BASE=/path/to/other/tree, that tree's build as "base".
# Needs root, dpdk-testpmd, hugepages (set up here), python3, iproute2.
# Usage: tests/bench/run-encap-bench.sh [seconds-per-run]   (RUNS=3, SIZES="64 1500", KEEP=1,
#        MODES="Gso Raw AfXdp" to pick the switch's modes, PERF=<mode> to profile its 64-byte runs)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-8}
runs=${RUNS:-3}
sizes=${SIZES:-64 1500}
backend_core=${BACKEND_CORE:-1}
gen_core=${GEN_CORE:-0}
p="ioeb$$"
work=$(mktemp -d /tmp/overlay-encap-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  ip netns del "$p-h" 2>/dev/null || true
  ip netns del "$p-sink" 2>/dev/null || true
  rm -rf /var/run/dpdk/"$p"-* 2>/dev/null || true
  [ -n "${KEEP:-}" ] && echo "logs in $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

[ "$(cat /proc/sys/vm/nr_hugepages)" -ge 1024 ] || echo 1024 >/proc/sys/vm/nr_hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs none /dev/hugepages
dotnet build switch/OverlaySwitch.Switch.Host -c Release --nologo -v quiet >/dev/null
daemon_here=$PWD/switch/OverlaySwitch.Switch.Host/bin/Release/net10.0/overlay-switchd.dll
daemon_base=${BASE:+$BASE/switch/OverlaySwitch.Switch.Host/bin/Release/net10.0/overlay-switchd.dll}
if [ -n "$daemon_base" ]; then (cd "$BASE" && dotnet build switch/OverlaySwitch.Switch.Host -c Release --nologo -v quiet >/dev/null); fi

mac_a=52:54:00:00:0e:01 mac_b=52:54:00:00:0e:02
# Host 10.79.1.1 on ul0; the sink owns sk0 (10.79.1.254); the remote VTEP 10.79.1.2 is reached
# through a permanent neighbour entry for sk0's MAC, and the sink drops it (not its address).
ip netns add "$p-h"
ip netns add "$p-sink"
ip link add ul0 netns "$p-h" mtu 1600 type veth peer name sk0 netns "$p-sink" mtu 1600
ip -n "$p-h" addr add 10.79.1.1/24 dev ul0
ip -n "$p-sink" addr add 10.79.1.254/24 dev sk0
for ns in "$p-h" "$p-sink"; do ip -n "$ns" link set lo up; done
ip -n "$p-h" link set ul0 up
ip -n "$p-sink" link set sk0 up
ip netns exec "$p-sink" sysctl -qw net.ipv4.ip_forward=0
sink_mac=$(ip -n "$p-sink" -o link show sk0 | grep -o 'link/ether [0-9a-f:]*' | awk '{print $2}')
host_mac=$(ip -n "$p-h" -o link show ul0 | grep -o 'link/ether [0-9a-f:]*' | awk '{print $2}')
ip -n "$p-h" neigh replace 10.79.1.2 lladdr "$sink_mac" dev ul0 nud permanent

# switch DAEMON SEND: overlay-switchd in the host namespace, worker on $backend_core
switch() {
  local daemon=$1 send=$2 mode=Sockets
  [ "$send" = AfXdp ] && send=Gso mode=AfXdp
  rm -rf "$work/run" && mkdir -p "$work/run"
  cat >"$work/switch.json" <<JSON
{ "Switch": { "HostName": "bench", "SocketDirectory": "$work/run", "DataplaneThreads": 1, "DataplaneCpus": [$backend_core],
  "VhostUser": { "UnsealedMemory": "TrustPrivilegedFrontends" },
  "Underlay": { "VtepV4": "10.79.1.1", "Mtu": 1600, "Send": "$send", "Mode": "$mode", "Interface": "ul0" },
  "Vteps": [ { "Address": "10.79.1.2", "Mtu": 1600 } ],
  "Networks": [ { "Vni": 100, "Mtu": 1550 } ],
  "Ports": [ { "Name": "vm-a", "Vni": 100, "Mac": "$mac_a", "Ipv4": ["192.168.100.1"] } ],
  "RemoteEndpoints": [ { "Name": "vm-b", "Vni": 100, "Mac": "$mac_b", "Ipv4": ["192.168.100.2"], "Vtep": "10.79.1.2" } ] } }
JSON
  ip netns exec "$p-h" dotnet "$daemon" --config "$work/switch.json" >"$work/switch.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [ -S "$work/run/vm-a.sock" ] && [ -S "$work/run/overlay-switchd.ctl" ] && return 0; sleep 0.1; done
  echo "overlay-switchd did not start:" >&2
  cat "$work/switch.log" >&2
  exit 1
}

# sent_packets: the switch's underlay datagrams out so far
sent_packets() {
  /usr/bin/python3 - "$work/run/overlay-switchd.ctl" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"status\n")
d = json.loads(b"".join(iter(lambda: s.recv(65536), b"")))
print(sum(w["sentPackets"] for w in d["workers"]))
PY
}

stop_from() {
  for pid in "${pids[@]:$1}"; do kill -INT "$pid" 2>/dev/null || true; done
  for _ in $(seq 20); do
    local alive=0
    for pid in "${pids[@]:$1}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.25
  done
  for pid in "${pids[@]:$1}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

# cpu_ns PID: nanoseconds all threads of PID have run so far: user + system time from each thread's
# stat (clock ticks; schedstat's run time reads 0 on kernels built without schedstats).
cpu_ns() {
  local hz
  hz=$(getconf CLK_TCK)
  for task in /proc/"$1"/task/*; do sed 's/.*) //' "$task/stat" 2>/dev/null; done | awk -v hz="$hz" '{s += $12 + $13} END {printf "%.0f\n", s * 1e9 / hz}'
}

# per_packet CPU_NS PACKETS: "pps ns/packet"
per_packet() { awk -v c="$1" -v n="$2" -v t="$seconds" 'BEGIN { printf "%d %d\n", n / t, (n > 0 ? c / n : 0) }'; }

# median of the numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {if (NR == 0) print 0; else print a[int((NR + 1) / 2)]}'; }

# median "Tx-pps" or "Rx-pps" samples of a testpmd log after the first two
median_pps() { tr '\033' '\n' <"$1" | grep -o "$2: *[0-9]*" | awk '{print $2}' | tail -n +3 | median; }

# encap DAEMON SEND SIZE: datagrams per second the switch sent
encap() {
  local daemon=$1 send=$2 size=$3 start=${#pids[@]}
  switch "$daemon" "$send"
  ip netns exec "$p-h" dpdk-testpmd -l "$gen_core,$backend_core" --main-lcore "$backend_core" --no-pci --single-file-segments \
    --in-memory --file-prefix="$p-tx" -m 512 \
    --vdev "net_virtio_user0,path=$work/run/vm-a.sock,queues=1,queue_size=1024,mac=$mac_a" -- \
    --forward-mode=txonly --txpkts="$((size - 4))" --tx-ip=192.168.100.1,192.168.100.2 --eth-peer=0,$mac_b \
    --stats-period 1 --nb-cores=1 --txd=1024 --rxd=1024 --total-num-mbufs=16384 >"$work/encap-$send-$size.log" 2>&1 &
  pids+=($!)
  sleep 3
  local before after cpu0 cpu1 switch_pid=${pids[$start]}
  before=$(sent_packets) cpu0=$(cpu_ns "$switch_pid")
  sleep "$seconds"
  after=$(sent_packets) cpu1=$(cpu_ns "$switch_pid")
  [ -n "${PERF:-}" ] && [ "$send" = "$PERF" ] && [ "$size" = 64 ] && profile encap
  stop_from "$start"
  per_packet $((cpu1 - cpu0)) $((after - before))
}

# profile WHAT: perf record of the switch's core for 5 s, report kept in the work directory
profile() {
  local f="perf-$1-$send"
  perf record -C "$backend_core" -g -o "$work/$f.data" -- sleep 5 >/dev/null 2>&1 || true
  perf report -i "$work/$f.data" --no-children --sort dso,symbol --stdio 2>/dev/null | head -80 >"$work/$f.txt" || true
  cp "$work/$f.txt" "/tmp/encap-bench-$f.txt" 2>/dev/null || true
}

# ceiling VDEV SIZE: testpmd txonly straight onto ul0, forwarding on $backend_core
ceiling() {
  local vdev=$1 size=$2 start=${#pids[@]}
  ip netns exec "$p-h" dpdk-testpmd -l "$gen_core,$backend_core" --main-lcore "$gen_core" --no-pci --in-memory --file-prefix="$p-ceil" -m 512 \
    --vdev "$vdev" -- --forward-mode=txonly --txpkts="$((size - 4))" --tx-ip=10.79.1.1,10.79.1.2 --eth-peer=0,$sink_mac \
    --stats-period 1 --nb-cores=1 --total-num-mbufs=16384 >"$work/ceiling-$size.log" 2>&1 &
  pids+=($!)
  sleep 3
  local cpu0 cpu1 pps
  cpu0=$(cpu_ns "${pids[$start]}")
  sleep "$seconds"
  cpu1=$(cpu_ns "${pids[$start]}")
  pps=$(median_pps "$work/ceiling-$size.log" Tx-pps)
  stop_from "$start"
  per_packet $((cpu1 - cpu0)) $((pps * seconds))
}

# decap DAEMON SEND SIZE: frames per second delivered to the vhost-user port
decap() {
  local daemon=$1 send=$2 size=$3 start=${#pids[@]}
  switch "$daemon" "$send"
  ip netns exec "$p-h" dpdk-testpmd -l "$gen_core,$backend_core" --main-lcore "$backend_core" --no-pci --single-file-segments \
    --in-memory --file-prefix="$p-rx" -m 512 \
    --vdev "net_virtio_user0,path=$work/run/vm-a.sock,queues=1,queue_size=1024,mac=$mac_a" -- \
    --forward-mode=rxonly --stats-period 1 --nb-cores=1 --txd=1024 --rxd=1024 --total-num-mbufs=16384 >"$work/decap-$send-$size.log" 2>&1 &
  pids+=($!)
  sleep 2
  ip netns exec "$p-sink" dpdk-testpmd -l "$backend_core,$gen_core" --main-lcore "$backend_core" --no-pci --in-memory --file-prefix="$p-gen" -m 512 \
    --vdev "net_pcap0,rx_pcap=$work/vxlan-$size.pcap,infinite_rx=1" --vdev "net_af_packet0,iface=sk0,qpairs=1" -- \
    --forward-mode=io --stats-period 1 --nb-cores=1 --total-num-mbufs=16384 >"$work/gen-$size.log" 2>&1 &
  pids+=($!)
  sleep 3
  local cpu0 cpu1 pps
  cpu0=$(cpu_ns "${pids[$start]}")
  sleep "$seconds"
  cpu1=$(cpu_ns "${pids[$start]}")
  pps=$(median_pps "$work/decap-$send-$size.log" Rx-pps)
  [ -n "${PERF:-}" ] && [ "$send" = "$PERF" ] && [ "$size" = 64 ] && profile decap
  stop_from "$start"
  per_packet $((cpu1 - cpu0)) $((pps * seconds))
}

# VXLAN datagrams from 10.79.1.2 to the switch: inner frames of SIZE bytes (with CRC) from vm-b
# to vm-a, 64 inner UDP flows, outer UDP checksum zero, written as a pcap for net_pcap.
for size in $sizes; do
  /usr/bin/python3 - "$work/vxlan-$size.pcap" "$size" "$host_mac" "$sink_mac" "$mac_a" "$mac_b" <<'PY'
import struct, sys
path, size, host_mac, sink_mac, mac_a, mac_b = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
mac = lambda m: bytes(int(x, 16) for x in m.split(":"))
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack(f"!{len(b)//2}H", b))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
def ipv4(src, dst, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, 17, 0, bytes(src), bytes(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload
with open(path, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for flow in range(64):
        inner_payload = bytes(size - 4 - 14 - 20 - 8)
        udp = struct.pack("!HHHH", 1024 + flow, 9000, 8 + len(inner_payload), 0) + inner_payload
        inner = mac(mac_a) + mac(mac_b) + b"\x08\x00" + ipv4([192, 168, 100, 2], [192, 168, 100, 1], udp)
        vx = struct.pack("!II", 0x08000000, 100 << 8) + inner
        outer_udp = struct.pack("!HHHH", 49152 + flow * 64, 4789, 8 + len(vx), 0) + vx
        frame = mac(host_mac) + mac(sink_mac) + b"\x08\x00" + ipv4([10, 79, 1, 2], [10, 79, 1, 1], outer_udp)
        f.write(struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)
PY
done

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start; switch worker and ceilings on core $backend_core, generators on core $gen_core; $runs runs, medians"
modes=("Gso:$daemon_here" "Raw:$daemon_here" "AfXdp:$daemon_here")
[ -n "${MODES:-}" ] && read -r -a modes <<<"$(for m in $MODES; do printf '%s:%s ' "$m" "$daemon_here"; done)"
[ -n "$daemon_base" ] && modes+=("base:$daemon_base")
printf '%-38s' "packets/s | CPU ns per packet"
for size in $sizes; do printf ' %20s' "${size}B"; done
echo
row() {
  local label=$1; shift
  printf '%-38s' "$label"
  for v in "$@"; do printf ' %20s' "$v"; done
  echo
}
# medians RUNS-OUTPUT: "median-pps | median-ns" of lines "pps ns"
medians() { local lines; lines=$(cat); echo "$(awk '{print $1}' <<<"$lines" | median) | $(awk '{print $2}' <<<"$lines" | median)"; }
for what in encap decap; do
  for mode in "${modes[@]}"; do
    name=${mode%%:*} daemon=${mode#*:} send=${mode%%:*}
    [ "$send" = base ] && send=Raw # main's switch has only the raw sender and ignores the setting
    values=()
    for size in $sizes; do
      values+=("$(for _ in $(seq "$runs"); do "$what" "$daemon" "$send" "$size"; done | medians)")
    done
    row "$what, switch ($name)" "${values[@]}"
  done
done
for vdev in "net_af_packet0,iface=ul0,qpairs=1" "net_af_xdp0,iface=ul0,start_queue=0,queue_count=1"; do
  values=()
  for size in $sizes; do
    values+=("$(for _ in $(seq "$runs"); do ceiling "$vdev" "$size"; done | medians)")
  done
  row "ceiling: testpmd ${vdev%%0,*} txonly" "${values[@]}"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
