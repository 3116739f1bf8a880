#!/usr/bin/env bash
# deploy/install.sh into a temporary root: installs from one published tree, is idempotent, keeps
# an edited configuration, validates the units (systemd-analyze verify) and their exposure
# (systemd-analyze security, asserted below the agreed levels), and uninstalls exactly what it installed.
#   tests/system/deploy/install-test.sh PUBLISHED_DIR
# Needs no root. Exit 0 when every check passed; prints what it checked.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
published=$(realpath "${1:?published directory (deploy/install.sh --publish DIR)}")
# Agreed exposure levels (systemd-analyze security, 0 safest .. 10; "OK" is below 3.5 there). The
# controller needs nothing privileged: what is left is its network access and the JIT's writable
# code (1.3 measured). The switch keeps, by design, CAP_NET_ADMIN, ambient capabilities, the host's
# network, /dev/net/tun and the users of its sockets (2.2 measured). The limits sit a little above,
# so any loosening of either unit fails here.
max_controller=${MAX_CONTROLLER_EXPOSURE:-1.5}
max_switch=${MAX_SWITCH_EXPOSURE:-2.5}

work=$(mktemp -d /tmp/s5deploy-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
fail() { echo "FAIL: $*" >&2; exit 1; }

"$repo/deploy/install.sh" --prefix "$root" --from "$published" >/dev/null
for f in opt/overlayswitch/overlay-controller/overlay-controller opt/overlayswitch/overlay-switchd/overlay-switchd \
  opt/overlayswitch/overlayctl/overlayctl opt/overlayswitch/overlay/overlay usr/local/bin/overlayctl \
  etc/overlayswitch/controller.env etc/overlayswitch/switch.json \
  lib/systemd/system/overlay-controller.service lib/systemd/system/overlay-switchd.service; do
  [[ -e $root/$f ]] || fail "$f was not installed"
done
[[ $(stat -c %a "$root/var/lib/overlayswitch/switch") == 700 ]] || fail "the switch's state directory is not 0700"
echo "ok: installed into $root"

# Self-contained: the programs start without an SDK or runtime on the PATH.
env -i PATH=/usr/bin:/bin "$root/opt/overlayswitch/overlayctl/overlayctl" --help >/dev/null || fail "installed overlayctl does not run"
echo "ok: installed overlayctl runs with no dotnet on the PATH"

# Idempotent: a second run changes no file and lists the same manifest.
before=$(cd "$root" && find . -type f -newer "$root/opt/overlayswitch/install-manifest" | sort)
manifest1=$(sort "$root/opt/overlayswitch/install-manifest")
"$repo/deploy/install.sh" --prefix "$root" --from "$published" >/dev/null
[[ $(sort "$root/opt/overlayswitch/install-manifest") == "$manifest1" ]] || fail "a second install changed the manifest"
[[ ! -e $root/etc/overlayswitch/switch.json.dist ]] || fail "a second install treated its own configuration as edited"
echo "ok: a second install is the same install"

# Dry run: says what it would do, changes nothing.
snapshot=$(cd "$root" && find . -printf '%p %s %T@\n' | sort)
"$repo/deploy/install.sh" --prefix "$root" --from "$published" --dry-run >"$work/dry-run.txt"
grep -q "would run" "$work/dry-run.txt" || fail "--dry-run printed no plan"
[[ $(cd "$root" && find . -printf '%p %s %T@\n' | sort) == "$snapshot" ]] || fail "--dry-run changed the tree"
echo "ok: --dry-run changes nothing"

# An edited configuration is never overwritten.
echo '{ "Switch": { "HostName": "edited" } }' >"$root/etc/overlayswitch/switch.json"
"$repo/deploy/install.sh" --prefix "$root" --from "$published" >/dev/null
grep -q edited "$root/etc/overlayswitch/switch.json" || fail "an edited switch.json was overwritten"
[[ -e $root/etc/overlayswitch/switch.json.dist ]] || fail "the new example was not put beside the edited file"
echo "ok: the edited switch.json stays; the new example is switch.json.dist"

# Units: systemd-analyze verify in the installed root (ExecStart= binaries resolved there). A copy of
# it gets what a real root has besides our files: the system's units (sysinit.target, which default
# dependencies name) and /bin -> usr/bin with kill (ExecReload=/bin/kill).
verify_root=$work/verify-root
cp -a "$root" "$verify_root"
cp -rn /lib/systemd/system/. "$verify_root/lib/systemd/system/"
ln -sfn usr/bin "$verify_root/bin"
mkdir -p "$verify_root/usr/bin" && cp /usr/bin/kill "$verify_root/usr/bin/"
if ! systemd-analyze verify --root="$verify_root" "$verify_root/lib/systemd/system/overlay-controller.service" \
  "$verify_root/lib/systemd/system/overlay-switchd.service" >"$work/verify.txt" 2>&1 || [[ -s $work/verify.txt ]]; then
  cat "$work/verify.txt"
  fail "systemd-analyze verify complained about the units"
fi
echo "ok: systemd-analyze verify --root accepts both units (no message at all)"

# Exposure: the score of each unit, printed in full, asserted below the agreed level.
for unit in overlay-controller overlay-switchd; do
  systemd-analyze security --offline=yes --root="$verify_root" "$verify_root/lib/systemd/system/$unit.service" >"$work/$unit.security" 2>&1 || true
  score=$(grep -oP 'Overall exposure level for \S+: \K[0-9.]+' "$work/$unit.security") || { cat "$work/$unit.security"; fail "no exposure level for $unit"; }
  max=$max_controller
  [[ $unit == overlay-switchd ]] && max=$max_switch
  grep -E "^✗" "$work/$unit.security" | sed "s/^/  $unit: /" || true
  awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }' || fail "$unit exposure $score is above $max"
  echo "ok: $unit exposure level $score (agreed at most $max)"
done

# Uninstall: everything of ours goes, the edited configuration stays.
"$repo/deploy/install.sh" --prefix "$root" --uninstall >/dev/null
left=$(cd "$root" && find . -mindepth 1 | sort)
expected=$(printf '%s\n' ./etc ./etc/overlayswitch ./etc/overlayswitch/switch.json)
[[ $left == "$expected" ]] || fail "uninstall left: $left"
echo "ok: uninstall removed everything it installed except the edited switch.json"
