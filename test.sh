#!/usr/bin/env bash
# The project's single test command: installs the test prerequisites, builds once, runs the test
# layers in order and ends with one line "N passed, N failed, N skipped".
#
#   ./test.sh                 all layers: unit, integration, system
#   ./test.sh unit [...]      only the named layers
#
# A test project is any project under tests/<layer>/ that references Microsoft.NET.Test.Sdk, so
# new projects (e.g. the system layer) are picked up once they are in OverlaySwitch.sln.
# With CI=true, skipped tests in the system layer count as failed: system tests may only skip
# when a prerequisite is missing, and this script installs the prerequisites, so in CI a skip
# means something is broken.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

# Debian packages the tests drive as real peers (python3 also runs the burst tests' UDP receiver;
# iproute2 brings tc, which the migration tests use to cut a host off the controller).
packages=(tshark python3 python3-scapy iproute2)
# The controller's etcd store: the integration layer runs a single-member etcd, the system layer a 3-member cluster.
packages+=(etcd-server etcd-client)
# overlayctl capture and trace --pcap: SharpPcap writes and reads through libpcap; curl reads the switch's metrics.
packages+=(libpcap0.8 curl)
# What the system layer boots and drives: QEMU guests (TCG) built from the Debian kernel, busybox and
# iputils ping, and DPDK testpmd (Debian 12 ships dpdk-testpmd in dpdk-dev, not in dpdk).
system_packages=(qemu-system-x86 dpdk-dev busybox-static linux-image-amd64 iputils-ping cpio gzip)
# The multi-host overlay tests: namespace guests and the kernel vxlan peer (iproute2's ip/bridge/ss),
# captures (tcpdump, dissected by tshark), TCP transfers (socat), ARP broadcasts (arping), offload
# settings (ethtool); iperf3 and netcat for tests/bench/run-underlay-bench.sh.
system_packages+=(tcpdump socat iputils-arping ethtool iperf3 netcat-openbsd)
# The controller's topology page is tested in a real headless browser (Playwright drives Debian's chromium).
system_packages+=(chromium)
# deploy/ system tests: the REST calls of deploy/README.md (curl, jq); setpriv is util-linux's.
system_packages+=(curl jq)
# The controller's kill -9 tests run kill (procps); the status socket's group test makes a group and
# users (groupadd/useradd: passwd). Both may be missing from a minimal image.
system_packages+=(procps passwd)
# deploy/ system tests validate the units offline: systemd-analyze verify and security (Debian's systemd;
# a container image may lack it even though systemd does not run there).
system_packages+=(systemd)
# 2 MiB hugepages the system layer reserves for testpmd's virtio-user ports.
system_hugepages=1024
all_layers=(unit integration system)
results_dir=.test-results

export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

usage() {
  echo "usage: $0 [${all_layers[*]}]..." >&2
  exit 2
}

layers=()
for arg in "$@"; do
  case "$arg" in
    unit | integration | system) layers+=("$arg") ;;
    *) usage ;;
  esac
done
((${#layers[@]})) || layers=("${all_layers[@]}")
if [[ " ${layers[*]} " == *" system "* ]]; then
  packages+=("${system_packages[@]}")
fi

# Installs whatever in $packages is missing; silent when everything is there already.
install_prerequisites() {
  if ! command -v dpkg-query >/dev/null; then
    echo "test.sh: not a Debian system; install ${packages[*]} yourself" >&2
    return 0
  fi
  local missing=() pkg
  for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0

  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "test.sh: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "installing ${missing[*]}"
  local log
  log=$(mktemp)
  # wireshark-common asks whether non-root users may capture; answer no (tests read files, never capture).
  if ! {
    echo 'wireshark-common wireshark-common/install-setuid boolean false' | "${sudo[@]}" debconf-set-selections &&
      "${sudo[@]}" apt-get update -qq &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "test.sh: installing ${missing[*]} failed" >&2
    exit 1
  fi
  rm -f "$log"
}

# Reserves $system_hugepages 2 MiB hugepages and mounts hugetlbfs on /dev/hugepages, for the system
# layer; silent when both are in place. A shortfall is reported, and the tests that need them fail.
setup_hugepages() {
  local nr=/proc/sys/vm/nr_hugepages sudo=()
  [[ -r $nr ]] || return 0
  ((EUID == 0)) || sudo=(sudo)
  if (($(<"$nr") < system_hugepages)); then
    echo "$system_hugepages" | "${sudo[@]}" tee "$nr" >/dev/null 2>&1 || true
    (($(<"$nr") >= system_hugepages)) || echo "test.sh: only $(<"$nr") of $system_hugepages hugepages could be reserved" >&2
  fi
  if ! grep -qs ' /dev/hugepages hugetlbfs ' /proc/mounts; then
    "${sudo[@]}" mkdir -p /dev/hugepages && "${sudo[@]}" mount -t hugetlbfs none /dev/hugepages ||
      echo "test.sh: could not mount hugetlbfs on /dev/hugepages" >&2
  fi
}

# Value of attribute $1 in the XML element text $2.
attribute() {
  local value
  value=$(grep -o " $1=\"[0-9]*\"" <<<"$2" | grep -o '[0-9]\+') || value=0
  echo "$value"
}

total_passed=0 total_failed=0 total_skipped=0 format_failed=0

# Runs every test project of layer $1 and adds its counts to the totals.
run_layer() {
  local layer=$1 passed=0 failed=0 skipped=0 project name trx counters rc
  local projects=()
  if [[ -d tests/$layer ]]; then
    mapfile -t projects < <(find "tests/$layer" -mindepth 2 -maxdepth 2 -name '*.csproj' \
      -exec grep -l 'Microsoft.NET.Test.Sdk' {} + | sort)
  fi
  if ((${#projects[@]} == 0)); then
    echo "$layer: no test projects"
    return 0
  fi

  rm -rf "${results_dir:?}/$layer"
  for project in "${projects[@]}"; do
    echo "== $layer: $project"
    # --no-build runs whatever the solution build produced; a project outside the solution has nothing to run.
    if ! grep -qxF "$project" <<<"$solution_projects"; then
      echo "test.sh: $project is not in OverlaySwitch.sln (dotnet sln add $project)" >&2
      failed=$((failed + 1))
      continue
    fi
    name=$(basename "$project" .csproj)
    trx=$results_dir/$layer/$name.trx
    rc=0
    dotnet test "$project" --no-build -c Release --verbosity quiet \
      --results-directory "$results_dir/$layer" \
      --logger "trx;LogFileName=$name.trx" \
      --logger "console;verbosity=minimal" || rc=$?

    counters=$(grep -o '<Counters [^>]*>' "$trx" 2>/dev/null) || counters=""
    if [[ -z $counters ]]; then
      echo "test.sh: $name produced no test results (exit $rc)" >&2
      failed=$((failed + 1))
      continue
    fi
    # VSTest's Counters leave skipped xunit tests out of notExecuted (it stays 0): a skipped test
    # is only visible as total - executed.
    passed=$((passed + $(attribute passed "$counters")))
    skipped=$((skipped + $(attribute total "$counters") - $(attribute executed "$counters")))
    local project_failed=$(($(attribute failed "$counters") + $(attribute error "$counters") +
      $(attribute timeout "$counters") + $(attribute aborted "$counters")))
    if ((rc != 0 && project_failed == 0)); then
      echo "test.sh: $name exited with $rc without a failed test (crashed test host?)" >&2
      project_failed=1
    fi
    failed=$((failed + project_failed))
  done

  local note=""
  if [[ $layer == system && ${CI:-} == true ]] && ((skipped > 0)); then
    note=" (CI=true: $skipped skipped system tests count as failed)"
    failed=$((failed + skipped))
    skipped=0
  fi
  echo "$layer: $passed passed, $failed failed, $skipped skipped$note"
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  total_skipped=$((total_skipped + skipped))
}

install_prerequisites
if [[ " ${layers[*]} " == *" system "* ]]; then
  setup_hugepages
fi

echo "== build (Release)"
if ! dotnet build OverlaySwitch.sln -c Release --verbosity quiet --nologo; then
  echo "test.sh: build failed, counted as 1 failure"
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi
solution_projects=$(dotnet sln OverlaySwitch.sln list | tail -n +3)

# Formatting is part of the build: whitespace and style (.editorconfig) must be as `dotnet format` leaves them.
echo "== format (dotnet format whitespace, style --verify-no-changes)"
dotnet format whitespace OverlaySwitch.sln --verify-no-changes --no-restore || format_failed=1
dotnet format style OverlaySwitch.sln --verify-no-changes --no-restore --severity warn || format_failed=1
if ((format_failed)); then
  echo "test.sh: the tree is not formatted (run: dotnet format whitespace OverlaySwitch.sln && dotnet format style OverlaySwitch.sln --severity warn), counted as 1 failure"
fi

mkdir -p "$results_dir"
for layer in "${layers[@]}"; do
  run_layer "$layer"
done

total_failed=$((total_failed + format_failed))
echo "$total_passed passed, $total_failed failed, $total_skipped skipped"
((total_failed == 0))
