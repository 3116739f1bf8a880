#!/usr/bin/env bash
# TCP throughput between two QEMU guests (TCG) on vhost-user ports of two switches across a routed
# underlay, with virtio-net offloads negotiated (CSUM, HOST_TSO4/6, GUEST_CSUM, GUEST_TSO4/6: the
# switch segments the guests' TSO frames at encap and coalesces at decap) and without (QEMU's
# virtio-net-pci with csum=off,guest_csum=off,host_tso4=off,...), in one sitting, RUNS times each.
# The runs are the system tests tests/system/.../Overlay/VhostOffloadTests.cs (busybox nc, SHA-256
# checked); each prints a VHOST-OFFLOAD-RESULT line with MB/s per direction.
# Under TCG the guests' CPU, not the switch, bounds the rate: the figures compare what offloads
# save a guest, they are not the switch's capacity. Needs root (namespaces), QEMU and tshark.
# Each run moves MIB MiB each way (default 32: past TCP's slow start; the tests' own 4 MiB mostly
# measure it) and skips the underlay captures.
# Usage: MIB=32 tests/bench/run-vhost-offload-bench.sh [runs per mode, default 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
project=tests/system/OverlaySwitch.Switch.SystemTests
dotnet build "$project" --nologo -v quiet >/dev/null
dotnet build switch/OverlaySwitch.Switch.Host --nologo -v quiet >/dev/null
out=$(mktemp -d /tmp/overlay-vhost-offload-bench.XXXXXX)
class=OverlaySwitch.Tests.System.Overlay.VhostOffloadTests
for run in $(seq "$runs"); do
  for test in Tcp_between_offloading_qemu_guests_on_two_hosts_arrives_intact_in_underlay_sized_datagrams \
    Tcp_between_qemu_guests_without_offloads_arrives_intact_and_nothing_is_segmented_or_coalesced; do
    log="$out/$test-$run.log"
    VHOST_OFFLOAD_MIB=${MIB:-32} timeout 300 dotnet test "$project" --no-build --nologo --filter "FullyQualifiedName=$class.$test" \
      --logger "console;verbosity=detailed" >"$log" 2>&1 || echo "run $test #$run failed (log: $log)"
    grep -m1 -o 'VHOST-OFFLOAD-RESULT.*' "$log" || echo "VHOST-OFFLOAD-RESULT mode=$test run=$run none (see $log)"
  done
done | tee "$out/results.txt"
echo "=== summary (mean MB/s over the runs that completed; ratio on/off) ==="
awk '/^VHOST-OFFLOAD-RESULT/ && !/ none /{
  delete v
  for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  m = v["mode"]; n[m]++; ab[m] += v["a_to_b_MBps"]; ba[m] += v["b_to_a_MBps"]
}
END {
  for (m in n) printf "%-8s runs=%d a_to_b_MBps=%.2f b_to_a_MBps=%.2f\n", m, n[m], ab[m] / n[m], ba[m] / n[m]
  if (n["vo-on"] && n["vo-off"] && ab["vo-off"] > 0 && ba["vo-off"] > 0)
    printf "ratio on/off: a_to_b %.2f, b_to_a %.2f\n", (ab["vo-on"] / n["vo-on"]) / (ab["vo-off"] / n["vo-off"]), (ba["vo-on"] / n["vo-on"]) / (ba["vo-off"] / n["vo-off"])
}' "$out/results.txt"
echo "logs: $out"
