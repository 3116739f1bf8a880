#!/usr/bin/env bash
# QEMU live-migration benchmark (prints figures; asserts nothing): the system test's topology
# (tests/system/OverlaySwitch.Switch.SystemTests/Migration): switches A and B in different underlay
# subnets behind a router, a peer on host C pinging the guest every 100 ms and streaming datagrams
# to it, the guest (QEMU, TCG, vhost-user) live-migrated from A to B; then C's and A's tables point
# at B. Once with the guest's own announce and once with guest_announce=off (SEND_RARP), RUNS times
# each. Per run it prints lost pings, the longest gap between ping replies, the migration time and
# the time from the migration's completion to the first frame at B from the guest and to it.
# Figures, not assertions: the same runs under the test harness fail only on broken memory or a
# guest that never comes back. Needs root (namespaces), QEMU, python3 and a C compiler for the guest.
# Usage: tests/bench/run-migration-bench.sh [runs per mode, default 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
project=tests/system/OverlaySwitch.Switch.SystemTests
dotnet build "$project" --nologo -v quiet >/dev/null
dotnet build switch/OverlaySwitch.Switch.Host --nologo -v quiet >/dev/null
out=$(mktemp -d /tmp/overlay-migration-bench.XXXXXX)
for mode in guest_announce send_rarp; do
  for run in $(seq "$runs"); do
    log="$out/$mode-$run.log"
    # Each run is bounded by the test's own budget (300 s); the timeout is a backstop.
    timeout 420 dotnet test "$project" --no-build --nologo \
      --filter "FullyQualifiedName~QemuMigrationTests.A_guest_migrates_live_between_switches_in_different_subnets_with_its_memory_intact_$mode" \
      --logger "console;verbosity=detailed" >"$log" 2>&1 || echo "run $mode #$run failed (log: $log)"
    grep -m1 -o 'MIGRATION-RESULT.*' "$log" || echo "MIGRATION-RESULT mode=$mode run=$run none (see $log)"
  done
done | tee "$out/results.txt"
echo "=== summary (mean over the runs that completed) ==="
awk '/^MIGRATION-RESULT/ {
  for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  m = v["mode"]; n[m]++; lost[m] += v["pings_lost"]; gap[m] += v["longest_gap_ms"]; mig[m] += v["migration_s"]
  if (v["first_frame_to_guest_at_B_ms"] != "none") { to[m] += v["first_frame_to_guest_at_B_ms"]; nto[m]++ }
  if (v["first_frame_from_guest_at_B_ms"] != "none") { from[m] += v["first_frame_from_guest_at_B_ms"]; nfrom[m]++ }
}
END { for (m in n) printf "%-9s runs=%d lost_pings=%.1f longest_gap_ms=%.0f migration_s=%.2f first_frame_from_guest_ms=%s first_frame_to_guest_ms=%s\n",
  m, n[m], lost[m] / n[m], gap[m] / n[m], mig[m] / n[m],
  nfrom[m] ? sprintf("%.0f", from[m] / nfrom[m]) : "none", nto[m] ? sprintf("%.0f", to[m] / nto[m]) : "none" }' "$out/results.txt"
echo "logs: $out"
