#!/usr/bin/env bash
# The installed daemons, run as the units run them, enroll two hosts and carry a ping.
#   tests/system/deploy/enroll-test.sh PUBLISHED_DIR        (as root; about a minute)
#
# Installs into a temporary root (deploy/install.sh --prefix --from), then in network namespaces
# (controller; host-1, host-2 on one underlay link; a guest namespace per host) runs the installed
# overlay-controller and overlay-switchd as unprivileged uids with only the capabilities their units
# (and the tap-namespaces drop-in) grant: setpriv --reuid/--regid with no supplementary groups, no new
# privileges, bounding/inheritable/ambient sets from the units' AmbientCapabilities= lines. The uids
# are bare numbers with no passwd entry, so the test creates no users (what install.sh creates on a
# real host is the users' names, not anything the daemons need). Each switch is given only the
# controller's URL, its host name and an enrollment token; guests on the two hosts ping each other.
# A used and an expired enrollment token are refused (410) and a switch started with the used one
# exits 2 saying so. sd_notify readiness: each daemon runs with NOTIFY_SOCKET (and LISTEN_PID, how
# .NET recognises a systemd service besides its parent being systemd) and must send READY=1.
# Cleans up everything (namespaces, processes by PID, the temporary root) on any exit.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
published=$(realpath "${1:?published directory (deploy/install.sh --publish DIR)}")
((EUID == 0)) || { echo "enroll-test.sh: needs root (namespaces)" >&2; exit 1; }

tag=s5dep$$
work=$(mktemp -d /tmp/s5deploy-enroll.XXXXXX)
chmod 0755 "$work"
root=$work/root
controller_uid=64990
switch_uid=64991
ns_ctl=$tag-ctl
pids=()
namespaces=()
fail() {
  echo "FAIL: $*" >&2
  for log in "$work"/*.log "$work"/qemu/console.log; do [[ -f $log ]] && { echo "--- $log" >&2; tail -n 30 "$log" >&2; }; done
  exit 1
}
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
wait_for() { # seconds, description, command...
  local seconds=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${seconds}s waiting for $what"
    sleep 0.2
  done
}

"$repo/deploy/install.sh" --prefix "$root" --from "$published" >/dev/null
unit_dir=$root/lib/systemd/system
echo "ok: installed into $root"

# The capabilities a unit (and drop-ins) grant, as setpriv's list: CAP_NET_ADMIN -> +net_admin.
caps_of() {
  local caps
  caps=$(grep -h '^AmbientCapabilities=' "$@" | cut -d= -f2- | tr ' ' '\n' | grep . | sort -u | tr 'A-Z' 'a-z' | sed 's/^cap_/+/' | paste -sd, -)
  echo "-all${caps:+,$caps}"
}
controller_caps=$(caps_of "$unit_dir/overlay-controller.service")
switch_caps=$(caps_of "$unit_dir/overlay-switchd.service" "$root/opt/overlayswitch/share/tap-namespaces.conf")
echo "ok: capabilities from the units: controller '$controller_caps', switch '$switch_caps'"
# The group QEMU runs in (libvirt-qemu on a libvirt host), and a QEMU user in it: the switch is a
# member (install.sh adds overlay-switch to libvirt-qemu) and gives its sockets that group.
qemu_gid=64992
qemu_uid=64993
as_unit() { # uid groups caps command...: the unit's User= (a bare uid here) and its groups, capabilities, NoNewPrivileges=
  local uid=$1 groups=$2 caps=$3
  shift 3
  local group_args=(--clear-groups)
  [[ -n $groups ]] && group_args=(--groups "$groups")
  exec setpriv --reuid "$uid" --regid "$uid" "${group_args[@]}" --no-new-privs --bounding-set="$caps" --inh-caps="$caps" --ambient-caps="$caps" "$@"
}

# Underlay: the controller's namespace bridges one link per host.
ip netns add "$ns_ctl" && namespaces+=("$ns_ctl")
ip -n "$ns_ctl" link add br0 type bridge
ip -n "$ns_ctl" addr add 10.231.0.254/24 dev br0
ip -n "$ns_ctl" link set br0 up
ip -n "$ns_ctl" link set lo up
for n in 1 2; do
  ip netns add "$tag-h$n" && namespaces+=("$tag-h$n")
  ip netns add "$tag-g$n" && namespaces+=("$tag-g$n")
  ip link add ul0 netns "$tag-h$n" type veth peer name h$n netns "$ns_ctl"
  ip -n "$ns_ctl" link set h$n master br0 up
  ip -n "$tag-h$n" addr add 10.231.0.$n/24 dev ul0
  ip -n "$tag-h$n" link set ul0 up
  ip -n "$tag-h$n" link set lo up
  ip -n "$tag-g$n" link set lo up
done

# Runtime and state directories as RuntimeDirectory=/StateDirectory= make them: owned by the unit's user.
install -d -m 0700 -o $controller_uid -g $controller_uid "$root/var/lib/overlayswitch/controller"

# sd_notify: a datagram socket per daemon that records what it is sent. .NET's AddSystemd takes a
# process for a systemd service when its parent's name (comm) is "systemd": the daemons here are
# children of bash started through a link named "systemd" (see launch).
ln -s "$(command -v bash)" "$work/systemd"
launch() { # name log command... : starts the daemon with NOTIFY_SOCKET=$work/name.notify.sock; sets launched_pid
  local name=$1 log=$2
  shift 2
  rm -f "$work/$name.notify" "$work/$name.pid"
  socat -u "UNIX-RECV:$work/$name.notify.sock,mode=0666,unlink-early" "OPEN:$work/$name.notify,creat,append" </dev/null >/dev/null 2>&1 &
  pids+=($!)
  wait_for 10 "the notify socket of $name" test -S "$work/$name.notify.sock"
  NOTIFY_SOCKET=$work/$name.notify.sock "$work/systemd" -c '"$@" & echo $! >"$0"; wait $!' "$work/$name.pid" "$@" </dev/null >>"$log" 2>&1 &
  pids+=($!)
  wait_for 10 "the pid of $name" test -s "$work/$name.pid"
  launched_pid=$(cat "$work/$name.pid")
  pids+=("$launched_pid")
}

# The controller, configured by the installed controller.env (its paths moved into the root).
sed "s#=/var/lib/#=$root/var/lib/#" "$root/etc/overlayswitch/controller.env" | grep '^OVERLAY_CONTROLLER_' >"$work/controller.env"
mapfile -t controller_env <"$work/controller.env"
launch controller "$work/controller.log" ip netns exec "$ns_ctl" env "${controller_env[@]}" \
  bash -c "$(declare -f as_unit); as_unit $controller_uid '' '$controller_caps' '$root/opt/overlayswitch/overlay-controller/overlay-controller'"
api() { # method path [json]
  ip netns exec "$ns_ctl" curl -sS --max-time 30 -X "$1" -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    "http://127.0.0.1:8080$2" ${3:+--data "$3"}
}
wait_for 180 "the controller's READY=1" grep -q READY=1 "$work/controller.notify"
admin=$(cat "$root/var/lib/overlayswitch/controller/admin.token")
[[ $(stat -c '%u %a' "$root/var/lib/overlayswitch/controller/admin.token") == "$controller_uid 600" ]] || fail "admin.token is not the controller user's, 0600"
# The first request on a loaded machine may take a while (JIT): READY=1 means listening, not fast.
wait_for 90 "the controller's API" bash -c "$(declare -f api); admin='$admin' ns_ctl='$ns_ctl'; api GET /api/v1/hosts | jq -e .items"
echo "ok: overlay-controller (uid $controller_uid, no capabilities) sent READY=1 and serves"

enroll_token() { # host-name seconds -> secret
  api POST /api/v1/enrollment-tokens "{\"hostName\":\"$1\",\"expiresInSeconds\":$2}" | jq -er .token
}

# A switch per host, configured from the installed switch.json with only URL, host name and enrollment token.
start_switch() { # n
  local n=$1 conf=$work/switch-h$1.json
  install -d -m 0711 -o $switch_uid -g $switch_uid "$root/run/overlayswitch/h$n"
  install -d -m 0700 -o $switch_uid -g $switch_uid "$root/var/lib/overlayswitch/h$n"
  jq --arg host "host-$n" --arg sockets "$root/run/overlayswitch/h$n" --arg state "$root/var/lib/overlayswitch/h$n" \
    --arg vtep "10.231.0.$n" --arg token "$work/h$n.enroll" \
    '.Switch.HostName = $host | .Switch.SocketDirectory = $sockets | .Switch.StateDirectory = $state
     | .Switch.Underlay.VtepV4 = $vtep | .Switch.Controller.Url = "http://10.231.0.254:8080/"
     | .Switch.Controller.EnrollmentTokenFile = $token | .Switch.SocketGid = $gid' --argjson gid $qemu_gid \
    "$root/etc/overlayswitch/switch.json" >"$conf"
  launch "h$n" "$work/switch-h$n.log" ip netns exec "$tag-h$n" \
    bash -c "$(declare -f as_unit); as_unit $switch_uid $qemu_gid '$switch_caps' '$root/opt/overlayswitch/overlay-switchd/overlay-switchd' --config '$conf'"
  switch_pid[$n]=$launched_pid
}
declare -a switch_pid
for n in 1 2; do
  enroll_token "host-$n" 300 >"$work/h$n.enroll"
  chown $switch_uid "$work/h$n.enroll"
  chmod 0600 "$work/h$n.enroll"
  start_switch "$n"
done
for n in 1 2; do
  wait_for 180 "host-$n's READY=1" grep -q READY=1 "$work/h$n.notify"
  state=$root/var/lib/overlayswitch/h$n
  grep -q "enrolled host 'host-$n'" "$work/switch-h$n.log" || fail "switch $n did not say it enrolled"
  [[ $(stat -c '%u %a' "$state/host.token") == "$switch_uid 600" ]] || fail "host-$n's host.token is not 0600 and the switch user's"
  [[ $(stat -c '%u %a' "$state/host.json") == "$switch_uid 600" ]] || fail "host-$n's host.json is not 0600 and the switch user's"
  [[ $(stat -c '%a' "$state") == 700 ]] || fail "host-$n's state directory is not 0700"
  test -S "$root/run/overlayswitch/h$n/overlay-switchd.ctl" || fail "host-$n was READY without its status socket"
  host_id[$n]=$(jq -er .hostId "$state/host.json")
done
declare -a host_id
host_id[1]=$(jq -er .hostId "$root/var/lib/overlayswitch/h1/host.json")
host_id[2]=$(jq -er .hostId "$root/var/lib/overlayswitch/h2/host.json")
for n in 1 2; do
  wait_for 30 "host-$n registered with its VTEP" bash -c "$(declare -f api); admin='$admin' ns_ctl='$ns_ctl'; api GET /api/v1/hosts/${host_id[$n]} | jq -e '.vtepV4 == \"10.231.0.$n\"'"
done
echo "ok: two switches (uid $switch_uid, capabilities $switch_caps) enrolled with one-time tokens: ${host_id[1]}, ${host_id[2]}; READY=1 with status sockets up"

# A network and a tap port per host in its guest's namespace, by the REST API.
tenant=$(api POST /api/v1/tenants '{"name":"deploy"}' | jq -er .id)
network=$(api POST /api/v1/networks "{\"tenantId\":\"$tenant\",\"name\":\"deploy\",\"subnets\":[\"192.168.77.0/24\"]}" | jq -er .id)
for n in 1 2; do
  port=$(api POST /api/v1/ports "{\"networkId\":\"$network\",\"name\":\"g$n\",\"mac\":\"02:77:00:00:00:0$n\",\"ips\":[\"192.168.77.$n\"],\"kind\":\"Tap\"}" | jq -er .id)
  api PUT "/api/v1/ports/$port/binding" "{\"hostId\":\"${host_id[$n]}\",\"namespace\":\"$tag-g$n\"}" | jq -e .id >/dev/null
  port_id[$n]=$port
done
declare -a port_id
for n in 1 2; do
  wait_for 60 "port g$n realized" bash -c "$(declare -f api); admin='$admin' ns_ctl='$ns_ctl'; api GET /api/v1/ports/${port_id[$n]}/status | jq -e .realized"
  device=$(api GET "/api/v1/ports/${port_id[$n]}" | jq -er .device)
  ip -n "$tag-g$n" link set "$device" address "02:77:00:00:00:0$n"
  ip -n "$tag-g$n" addr add "192.168.77.$n/24" dev "$device"
  ip -n "$tag-g$n" link set "$device" up
done
# The remote endpoints reach each switch a moment after the ports are realized: wait for the first reply.
wait_for 60 "guest 1 reaching guest 2" ip netns exec "$tag-g1" ping -c 1 -W 1 192.168.77.2
ip netns exec "$tag-g1" ping -c 3 -i 0.2 -W 10 192.168.77.2 >"$work/ping.txt" || true
grep -q ' 3 received' "$work/ping.txt" || { cat "$work/ping.txt"; fail "guest 1 did not get 3 of 3 replies from guest 2 across the overlay"; }
echo "ok: $(grep -o '[0-9]* received' "$work/ping.txt") of 3 pings from guest 1 (host-1) to guest 2 (host-2) over VXLAN"

# A QEMU guest on host-2, on a port made by deploy/README.md's REST calls and started by its QEMU
# command line, both taken from the README as they stand (see the blocks marked deploy-test there).
readme_block() { # tag -> the sh block after "<!-- deploy-test: tag -->"
  awk -v tag="$1" 'index($0, "<!-- deploy-test: " tag " -->") { found = 1; next }
    found && /^```sh/ { inside = 1; next } inside && /^```/ { exit } inside { print }' "$repo/deploy/README.md"
}
create_port=$(readme_block create-port)
qemu_command=$(readme_block qemu)
[[ -n $create_port && $qemu_command == qemu-system-x86_64* ]] || fail "deploy/README.md has no create-port or qemu block"
vm_mac=02:77:00:00:00:03
read -r vm_port socket < <(ip netns exec "$ns_ctl" env CONTROLLER=http://127.0.0.1:8080 TOKEN="$admin" NETWORK="$network" \
  HOST="${host_id[2]}" MAC=$vm_mac IP=192.168.77.3 bash -c "set -euo pipefail
exec 3>&1 1>>'$work/readme-calls.log'
$create_port
echo \"\$PORT \$SOCKET\" >&3")
[[ $socket == /run/overlayswitch/switch/$vm_port.sock ]] || fail "the README's calls gave port '$vm_port' socket '$socket'"
# The test's host-2 keeps its sockets under the temporary root.
socket=$root/run/overlayswitch/h2/$vm_port.sock
wait_for 60 "the VM port realized" bash -c "$(declare -f api); admin='$admin' ns_ctl='$ns_ctl'; api GET /api/v1/ports/$vm_port/status | jq -e .realized"
[[ $(stat -c '%u:%g %a' "$socket") == "$switch_uid:$qemu_gid 660" ]] || fail "the port's socket is $(stat -c '%u:%g %a' "$socket"), not the switch's, group $qemu_gid, 0660"
if setpriv --reuid 64994 --regid 64994 --clear-groups socat -u /dev/null "UNIX-CONNECT:$socket" 2>/dev/null; then
  fail "a user outside the socket's group could connect to the vhost-user socket"
fi
echo "ok: port $vm_port from the README's REST calls; its socket is $(stat -c '%u:%g %a' "$socket") (switch uid, QEMU's group); another user is refused"
guest=$(CACHE_ROOT=/tmp/overlayswitch-guest "$repo/tests/system/guest/build-guest.sh" | tail -n 1)
install -d -m 0700 -o $qemu_uid -g $qemu_gid "$work/qemu"
# no_timer_check: a TCG guest on a loaded host can fail the kernel's IO-APIC timer check and panic.
boot="-kernel $guest/vmlinuz -initrd $guest/initramfs.cpio.gz -append 'console=ttyS0 quiet panic=-1 no_timer_check e2e.ip=192.168.77.3/24 e2e.mode=cmd' -bios /usr/share/qemu/qboot.rom -nodefaults -no-user-config -display none -no-reboot -serial file:$work/qemu/console.log"
qemu_run=${qemu_command/-drive file=guest.qcow2,if=virtio/$boot}
[[ $qemu_run != "$qemu_command" ]] || fail "the README's QEMU command has no '-drive file=guest.qcow2,if=virtio' to replace"
(
  export ACCEL=tcg NIC_EXTRA=,vectors=0,romfile= SOCKET=$socket MAC=$vm_mac
  exec setpriv --reuid $qemu_uid --regid $qemu_gid --clear-groups bash -c "exec $qemu_run"
) >"$work/qemu.log" 2>&1 &
pids+=($!)
echo "  qemu (uid $qemu_uid, group $qemu_gid): ${qemu_run//$'\\\n'/}" | tr -s ' '
wait_for 300 "the QEMU guest's eth0 (E2E-READY)" grep -q E2E-READY "$work/qemu/console.log"
grep -o 'E2E-NET-UP.*' "$work/qemu/console.log" | sed 's/^/  guest: /'
wait_for 60 "guest 1 (host-1) reaching the QEMU guest (host-2)" ip netns exec "$tag-g1" ping -c 1 -W 1 192.168.77.3
# A TCG guest on a loaded machine answers late at times: wait up to 10 s for each reply, want all 3.
ip netns exec "$tag-g1" ping -c 3 -i 0.3 -W 10 192.168.77.3 >"$work/ping-vm.txt" || true
grep -q ' 3 received' "$work/ping-vm.txt" || { cat "$work/ping-vm.txt"; fail "guest 1 did not get 3 of 3 replies from the QEMU guest"; }
echo "ok: the QEMU guest from the README's command line answers guest 1 across hosts: $(grep -o '[0-9]* received' "$work/ping-vm.txt") of 3"

# The used token again: 410, and a switch given it exits 2 with the reason.
status=$(ip netns exec "$ns_ctl" curl -sS -o "$work/reuse.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $(cat "$work/h1.enroll")" \
  -H 'Content-Type: application/json' --data '{"hostName":"host-1"}' http://127.0.0.1:8080/api/v1/enrollments)
[[ $status == 410 ]] && grep -q "was used" "$work/reuse.json" || fail "a used enrollment token got $status: $(cat "$work/reuse.json")"
echo "ok: the used token again: 410 $(jq -r .detail "$work/reuse.json")"
install -d -m 0711 -o $switch_uid -g $switch_uid "$root/run/overlayswitch/h3"
install -d -m 0700 -o $switch_uid -g $switch_uid "$root/var/lib/overlayswitch/h3"
jq --arg s "$root/run/overlayswitch/h3" --arg st "$root/var/lib/overlayswitch/h3" \
  '.Switch.HostName = "host-1" | .Switch.SocketDirectory = $s | .Switch.StateDirectory = $st' "$work/switch-h1.json" >"$work/switch-h3.json"
set +e
(ip netns exec "$tag-h1" bash -c "$(declare -f as_unit); as_unit $switch_uid $qemu_gid '$switch_caps' '$root/opt/overlayswitch/overlay-switchd/overlay-switchd' --config '$work/switch-h3.json'") >"$work/switch-h3.out" 2>&1 &
third=$!
pids+=($third)
wait_for 60 "the switch with a used token to exit" bash -c "! kill -0 $third"
wait "$third"
code=$?
set -e
[[ $code == 2 ]] && grep -q "was used" "$work/switch-h3.out" || fail "a switch with a used enrollment token exited $code: $(cat "$work/switch-h3.out")"
[[ ! -e $root/var/lib/overlayswitch/h3/host.json ]] || fail "a refused enrollment left credentials"
echo "ok: a switch with the used token exits 2: $(head -c 200 "$work/switch-h3.out")"

# An expired token: 410.
expiring=$(enroll_token host-9 1)
sleep 2
status=$(ip netns exec "$ns_ctl" curl -sS -o "$work/expired.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $expiring" \
  -H 'Content-Type: application/json' --data '{"hostName":"host-9"}' http://127.0.0.1:8080/api/v1/enrollments)
[[ $status == 410 ]] && grep -q "expired" "$work/expired.json" || fail "an expired enrollment token got $status: $(cat "$work/expired.json")"
echo "ok: an expired token: 410 $(jq -r .detail "$work/expired.json")"

# A restart needs no enrollment token: the switch uses host.json and host.token.
kill "${switch_pid[1]}"
wait_for 20 "switch 1 to stop" bash -c "! kill -0 ${switch_pid[1]}"
rm -f "$work/h1.enroll"
start_switch 1
wait_for 180 "host-1's READY=1 after the restart" grep -q READY=1 "$work/h1.notify"
wait_for 60 "guest 1 reaching guest 2 after host-1's restart" ip netns exec "$tag-g1" ping -c 1 -W 1 192.168.77.2
echo "ok: host-1 restarted without an enrollment token (its state directory's credentials) and the ping still works"
