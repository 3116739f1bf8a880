#!/usr/bin/env bash
# What `overlayctl capture` costs the dataplane (BenchmarkDotNet): encapsulation with no capture
# hooks, with the hooks idle, and with a capture running, side by side in ns per packet.
# Pinned to one core like run-overlay-bench.sh. Usage: tests/bench/run-capture-bench.sh [--job short]
set -euo pipefail
cd "$(dirname "$0")/../.."
core=${BENCH_CORE:-1}
dotnet build tests/bench/OverlaySwitch.Benchmarks -c Release --nologo -v quiet
exec taskset -c "$core" dotnet tests/bench/OverlaySwitch.Benchmarks/bin/Release/net10.0/OverlaySwitch.Benchmarks.dll \
  --filter '*CaptureBenchmarks*' --artifacts .bench-results "$@"
