#!/usr/bin/env bash
# Controller benchmark (prints figures; not a test): a Release overlay-controller on a temporary
# SQLite file on loopback; 1,000 simulated agents (one watch stream per host), 10,000 ports;
# propagation of port updates (sent -> last agent that needs it received it), median and p99;
# then REST read throughput with wrk (GET of one port, admin token).
# Usage: tests/bench/run-controller-bench.sh [agents] [ports] [updates]
set -euo pipefail
cd "$(dirname "$0")/../.."
agents=${1:-1000}
ports=${2:-10000}
updates=${3:-300}
wrk_seconds=${WRK_SECONDS:-10}
wrk_connections=${WRK_CONNECTIONS:-64}

if ! command -v wrk >/dev/null; then
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  echo "installing wrk"
  "${sudo[@]}" apt-get update -qq >/dev/null
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
# A thousand watch streams plus their client ends.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

dotnet build controller/OverlaySwitch.Controller -c Release --nologo -v quiet
dotnet build tests/bench/OverlaySwitch.Controller.Bench -c Release --nologo -v quiet

dir=$(mktemp -d /tmp/overlay-controller-bench.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dotnet controller/OverlaySwitch.Controller/bin/Release/net10.0/overlay-controller.dll \
  --urls "http://127.0.0.1:$port" \
  --Controller:DatabasePath="$dir/state.db" --Controller:AdminTokenFile="$dir/admin.token" \
  --Logging:LogLevel:Default=Warning >"$dir/controller.log" 2>&1 &
controller=$!
cleanup() {
  kill "$controller" 2>/dev/null || true
  wait "$controller" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

for _ in $(seq 300); do
  curl -fs "http://127.0.0.1:$port/api/v1/openapi.json" >/dev/null 2>&1 && break
  kill -0 "$controller" 2>/dev/null || { cat "$dir/controller.log"; exit 1; }
  sleep 0.1
done
token=$(cat "$dir/admin.token")

echo "== overlay-controller (Release, SQLite WAL synchronous=FULL) on $(nproc) cores, $agents agents, $ports ports"
dotnet tests/bench/OverlaySwitch.Controller.Bench/bin/Release/net10.0/OverlaySwitch.Controller.Bench.dll \
  --url "http://127.0.0.1:$port/" --token "$token" --agents "$agents" --ports "$ports" --updates "$updates" \
  --get-url-file "$dir/get-url"

echo "== REST reads: wrk -t2 -c$wrk_connections -d${wrk_seconds}s GET $(sed "s/127.0.0.1:$port/…/" "$dir/get-url") (the agents are gone; $ports ports in the store)"
wrk -t2 -c"$wrk_connections" -d"${wrk_seconds}s" --latency -H "Authorization: Bearer $token" "$(cat "$dir/get-url")"
