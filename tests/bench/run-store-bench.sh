#!/usr/bin/env bash
# Store benchmark (prints figures; not a test): the controller on SQLite (1 process) against the
# controller on etcd (3 members, 3 replicas), same machine, same load:
#   durable writes/s   - the setup phase of OverlaySwitch.Controller.Bench (16 concurrent writers on
#                        one controller/replica, each write durable before its answer)
#   REST reads/s       - wrk GET of one port on one controller/replica
#   propagation        - 1,000 simulated agents (watch streams; on etcd spread over the 3 replicas),
#                        10,000 ports; port updates written on one replica, time to the last agent
#                        that needs each, median and p99
#   agent failover     - (etcd only) the cluster system test's watcher: SIGKILL of its replica to its
#                        first event from another replica
# Usage: tests/bench/run-store-bench.sh [agents] [ports] [updates]
set -euo pipefail
cd "$(dirname "$0")/../.."
agents=${1:-1000}
ports=${2:-10000}
updates=${3:-300}
wrk_seconds=${WRK_SECONDS:-10}
wrk_connections=${WRK_CONNECTIONS:-64}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v etcd >/dev/null || need+=(etcd-server etcd-client)
if ((${#need[@]})); then
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  echo "installing ${need[*]}"
  "${sudo[@]}" apt-get update -qq >/dev/null
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

dotnet build controller/OverlaySwitch.Controller -c Release --nologo -v quiet
dotnet build tests/bench/OverlaySwitch.Controller.Bench -c Release --nologo -v quiet

dir=$(mktemp -d /tmp/overlay-store-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
controller_dll=controller/OverlaySwitch.Controller/bin/Release/net10.0/overlay-controller.dll
bench_dll=tests/bench/OverlaySwitch.Controller.Bench/bin/Release/net10.0/OverlaySwitch.Controller.Bench.dll

# start_controller NAME PORT ARGS...: starts overlay-controller in $dir/NAME and waits until it serves.
start_controller() {
  local name=$1 port=$2
  shift 2
  mkdir -p "$dir/$name"
  dotnet "$controller_dll" --urls "http://127.0.0.1:$port" \
    --Controller:DatabasePath="$dir/$name/state.db" --Controller:AdminTokenFile="$dir/$name/admin.token" \
    --Logging:LogLevel:Default=Warning "$@" >"$dir/$name/controller.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 600); do
    curl -fs "http://127.0.0.1:$port/api/v1/openapi.json" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$dir/$name/controller.log"; exit 1; }
    sleep 0.1
  done
  echo "controller $name did not serve" >&2
  exit 1
}

# run_load LABEL WRITE_URL AGENT_URLS READ_URL TOKEN: the propagation bench and wrk; figures to $dir/LABEL.*
run_load() {
  local label=$1 url=$2 agent_urls=$3 read_port=$4 token=$5
  echo "== $label: $agents agents, $ports ports, $updates updates"
  dotnet "$bench_dll" --url "$url" --agent-urls "$agent_urls" --token "$token" --agents "$agents" --ports "$ports" --updates "$updates" \
    --get-url-file "$dir/$label.get-url" | tee "$dir/$label.bench"
  local get_url
  get_url=$(sed "s#//127.0.0.1:[0-9]*/#//127.0.0.1:$read_port/#" "$dir/$label.get-url")
  wrk -t2 -c"$wrk_connections" -d"${wrk_seconds}s" --latency -H "Authorization: Bearer $token" "$get_url" | tee "$dir/$label.wrk"
}

# SQLite, one controller.
sqlite_port=$(free_port)
start_controller sqlite "$sqlite_port"
run_load sqlite "http://127.0.0.1:$sqlite_port/" "http://127.0.0.1:$sqlite_port/" "$sqlite_port" "$(cat "$dir/sqlite/admin.token")"
kill "${pids[0]}"
wait "${pids[0]}" 2>/dev/null || true

# etcd, three members (fsync on, the Debian defaults otherwise) and three replicas.
cluster=()
clients=()
for i in 0 1 2; do
  cp=$(free_port)
  pp=$(free_port)
  clients+=("http://127.0.0.1:$cp")
  cluster+=("m$i=http://127.0.0.1:$pp")
  eval "client_$i=$cp peer_$i=$pp"
done
initial=$(
  IFS=,
  echo "${cluster[*]}"
)
for i in 0 1 2; do
  cp_var="client_$i" pp_var="peer_$i"
  etcd --name "m$i" --data-dir "$dir/etcd$i" \
    --listen-client-urls "http://127.0.0.1:${!cp_var}" --advertise-client-urls "http://127.0.0.1:${!cp_var}" \
    --listen-peer-urls "http://127.0.0.1:${!pp_var}" --initial-advertise-peer-urls "http://127.0.0.1:${!pp_var}" \
    --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token "bench-$$" \
    --auto-compaction-mode revision --auto-compaction-retention 10000 >"$dir/etcd$i.log" 2>&1 &
  pids+=($!)
done
endpoints=$(
  IFS=,
  echo "${clients[*]}"
)
for _ in $(seq 300); do
  ETCDCTL_API=3 etcdctl --endpoints "$endpoints" endpoint health >/dev/null 2>&1 && break
  sleep 0.2
done
replica_ports=()
for i in 0 1 2; do
  p=$(free_port)
  replica_ports+=("$p")
  args=(--Controller:Store=Etcd --Controller:Etcd:KeyPrefix=/bench/)
  for k in 0 1 2; do args+=("--Controller:Etcd:Endpoints:$k=${clients[$(((i + k) % 3))]}"); done
  if ((i > 0)); then
    mkdir -p "$dir/replica$i"
    cp "$dir/replica0/admin.token" "$dir/replica$i/admin.token"
  fi
  start_controller "replica$i" "$p" "${args[@]}"
done
agent_urls="http://127.0.0.1:${replica_ports[0]}/,http://127.0.0.1:${replica_ports[1]}/,http://127.0.0.1:${replica_ports[2]}/"
run_load etcd "http://127.0.0.1:${replica_ports[0]}/" "$agent_urls" "${replica_ports[1]}" "$(cat "$dir/replica0/admin.token")"

# Agent failover: the cluster system test measures it (its watcher's SIGKILL-to-next-event time).
echo "== agent failover (tests/system ClusterTests)"
dotnet build tests/system/OverlaySwitch.Controller.SystemTests --nologo -v quiet
dotnet test tests/system/OverlaySwitch.Controller.SystemTests --no-build --filter "FullyQualifiedName~ClusterTests" \
  --logger "console;verbosity=detailed" >"$dir/failover.log" 2>&1 || echo "ClusterTests failed: $(grep -m1 -A3 'Error Message' "$dir/failover.log")"
failover=$(sed -n 's/^ *watcher failover: \(.*\)$/\1/p' "$dir/failover.log" | head -1)
grep -E '^ *(writers|watcher):' "$dir/failover.log" | sed 's/^ */  /' | sort -u

figure() { sed -n "$2" "$dir/$1" | head -1; }
writes() { figure "$1.bench" 's/.*(\([0-9]*\) writes\/s.*/\1/p'; }
median() { figure "$1.bench" 's/.*last agent received: median \([0-9.]*\) ms.*/\1/p'; }
p99() { figure "$1.bench" 's/.*last agent received: median [0-9.]* ms, p99 \([0-9.]*\) ms.*/\1/p'; }
reads() { figure "$1.wrk" 's/^Requests\/sec: *\([0-9.]*\).*/\1/p'; }
echo
echo "== figures ($(nproc) cores; $agents agents, $ports ports)"
printf '%-40s %15s %15s\n' "" "SQLite + 1" "etcd 3 + 3"
printf '%-40s %15s %15s\n' "durable writes/s (16 writers, 1 node)" "$(writes sqlite)" "$(writes etcd)"
printf '%-40s %15s %15s\n' "REST reads/s (wrk, 1 node)" "$(reads sqlite)" "$(reads etcd)"
printf '%-40s %15s %15s\n' "propagation median (ms)" "$(median sqlite)" "$(median etcd)"
printf '%-40s %15s %15s\n' "propagation p99 (ms)" "$(p99 sqlite)" "$(p99 etcd)"
printf '%-40s %15s %15s\n' "agent failover after SIGKILL" "n/a" "${failover:-not measured}"
