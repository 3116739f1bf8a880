#!/usr/bin/env bash
# QEMU live-migration benchmark (prints figures; asserts nothing), two topologies of the system
# tests (tests/system/OverlaySwitch.Switch.SystemTests/Migration), both with switches in different
# underlay subnets behind a router, a peer on a third host pinging the guest every 100 ms and
# streaming datagrams to it, and the guest (QEMU, TCG, vhost-user) live-migrated from host 1 to
# host 2:
# - static (QemuMigrationTests): statically configured switches; after the migration the test
#   points the peer's and the old host's tables at the new host by hand. Per run: lost pings, the
#   longest gap between ping replies, the migration time, and the time from the migration's
#   completion to the first frame at the new host from the guest and to it.
# - controller (ControlledQemuMigrationTests): the controller drives the move (POST .../migrations,
#   the target realizes the port incoming, the guest's proof activates it, the controller moves the
#   binding). Per run: lost pings, the longest gap, the migration time, the proof, and the time from
#   the migration's completion to the activation on the target's switch, to the controller's record
#   of it, and to the first ping reply.
# Each once with the guest's own announce and once with guest_announce=off (SEND_RARP), RUNS times.
# Figures, not assertions: the same runs under the test harness fail only on broken memory or a
# guest that never comes back. Needs root (namespaces), QEMU, python3 and a C compiler for the guest.
# Usage: tests/bench/run-migration-bench.sh [runs per mode, default 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
project=tests/system/OverlaySwitch.Switch.SystemTests
dotnet build "$project" --nologo -v quiet >/dev/null
dotnet build switch/OverlaySwitch.Switch.Host --nologo -v quiet >/dev/null
dotnet build controller/OverlaySwitch.Controller --nologo -v quiet >/dev/null
out=$(mktemp -d /tmp/overlay-migration-bench.XXXXXX)
static=QemuMigrationTests.A_guest_migrates_live_between_switches_in_different_subnets_with_its_memory_intact
controlled=ControlledQemuMigrationTests.The_controller_moves_a_live_migrated_qemu_guest
for test in "$static"_guest_announce "$static"_send_rarp "$controlled"_on_its_own_announce "$controlled"_on_send_rarp; do
  name=${test##*.}
  for run in $(seq "$runs"); do
    log="$out/$name-$run.log"
    # Each run is bounded by the test's own budget (300 s); the timeout is a backstop.
    timeout 420 dotnet test "$project" --no-build --nologo --filter "FullyQualifiedName~$test" \
      --logger "console;verbosity=detailed" >"$log" 2>&1 || echo "run $name #$run failed (log: $log)"
    grep -m1 -o 'MIGRATION-RESULT.*' "$log" || echo "MIGRATION-RESULT mode=$name run=$run none (see $log)"
  done
done | tee "$out/results.txt"
echo "=== summary (mean over the runs that completed) ==="
awk '/^MIGRATION-RESULT/ && !/ none /{
  delete v
  for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  m = v["mode"]; n[m]++; lost[m] += v["pings_lost"]; gap[m] += v["longest_gap_ms"]; mig[m] += v["migration_s"]
  nk = split("first_frame_from_guest_at_B_ms first_frame_to_guest_at_B_ms completion_to_local_activation_ms completion_to_activation_ms completion_to_first_reply_ms", keys, " ")
  for (k = 1; k <= nk; k++) if ((keys[k] in v) && v[keys[k]] != "none") { sum[m, keys[k]] += v[keys[k]]; cnt[m, keys[k]]++ }
  if ("proof" in v) proof[m] = proof[m] (proof[m] == "" ? "" : ",") v["proof"]
}
END { for (m in n) {
  line = sprintf("%-20s runs=%d lost_pings=%.1f longest_gap_ms=%.0f migration_s=%.2f", m, n[m], lost[m] / n[m], gap[m] / n[m], mig[m] / n[m])
  for (k = 1; k <= nk; k++) if (cnt[m, keys[k]]) line = line sprintf(" %s=%.0f", keys[k], sum[m, keys[k]] / cnt[m, keys[k]])
  if (proof[m] != "") line = line " proofs=" proof[m]
  print line } }' "$out/results.txt"
echo "logs: $out"
