#!/usr/bin/env bash
# Overlay core microbenchmarks (BenchmarkDotNet): ns per packet and bytes allocated for
# encapsulation, decapsulation, ARP reply and frag-needed generation. Pinned to one core
# (the machine has two; the other stays free for BenchmarkDotNet's host process and the OS).
# Usage: tests/bench/run-overlay-bench.sh [extra BenchmarkDotNet args, e.g. --job short]
set -euo pipefail
cd "$(dirname "$0")/../.."
core=${BENCH_CORE:-1}
dotnet build tests/bench/OverlaySwitch.Benchmarks -c Release --nologo -v quiet
exec taskset -c "$core" dotnet tests/bench/OverlaySwitch.Benchmarks/bin/Release/net10.0/OverlaySwitch.Benchmarks.dll \
  --filter '*OverlayBenchmarks*' --artifacts .bench-results "$@"
