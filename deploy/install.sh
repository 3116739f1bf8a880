#!/usr/bin/env bash
# Installs OverlaySwitch on a Debian host as systemd services (see deploy/README.md).
#
#   deploy/install.sh [--prefix ROOT] [--from DIR] [--dry-run]     install (idempotent)
#   deploy/install.sh --publish DIR                                 only publish into DIR
#   deploy/install.sh [--prefix ROOT] [--dry-run] --uninstall       remove what the manifest lists
#
# Installs the self-contained `dotnet publish` output (linux-x64: the host needs no .NET) of
# overlay-controller, overlay-switchd, overlayctl and overlay under /opt/overlayswitch/<name>/,
# configuration examples under /etc/overlayswitch (an existing file is never overwritten; the new
# example goes beside it as <file>.dist), state under /var/lib/overlayswitch/{controller,switch}, and
# the units overlay-controller.service and overlay-switchd.service under /lib/systemd/system (the
# units create /run/overlayswitch/* themselves: RuntimeDirectory=). It creates the system users
# overlay-controller and overlay-switch (the latter in group libvirt-qemu when that group exists,
# so that QEMU run by libvirt may use its vhost-user sockets).
#
# --prefix ROOT installs into ROOT as if it were / (a staging root: the units and configuration
#   still name /opt/overlayswitch, /etc/overlayswitch), and creates no users and changes no owners.
# --from DIR takes an already published tree (DIR/<name>/, as --publish DIR makes) instead of
#   publishing now (publishing takes minutes; tests publish once).
# --dry-run prints what would be done and changes nothing.
# --uninstall removes exactly what the manifest (/opt/overlayswitch/install-manifest) lists:
#   programs, units, the overlayctl link, configuration files still as installed (edited ones stay),
#   state and runtime directories that are empty, and the users install.sh created. State (the
#   controller's database, a switch's enrolled token) is kept: delete /var/lib/overlayswitch yourself.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deploy="$repo/deploy"
prefix=""
from=""
publish_only=""
dry_run=0
uninstall=0
rid=linux-x64

usage() { sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while (($#)); do
  case "$1" in
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --from) from=${2:?--from needs a directory}; shift 2 ;;
    --from=*) from=${1#*=}; shift ;;
    --publish) publish_only=${2:?--publish needs a directory}; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    -h | --help) usage 0 ;;
    *) echo "install.sh: unknown argument '$1'" >&2; usage 2 ;;
  esac
done
[[ -n $prefix ]] && prefix=$(realpath -m "$prefix")
[[ $prefix == / ]] && prefix=""

# The programs: installed name, project.
programs=(
  "overlay-controller controller/OverlaySwitch.Controller"
  "overlay-switchd switch/OverlaySwitch.Switch.Host"
  "overlayctl switch/OverlaySwitch.Ctl"
  "overlay topologies/OverlaySwitch.Topology"
)
opt=/opt/overlayswitch
etc=/etc/overlayswitch
state=/var/lib/overlayswitch
unitdir=/lib/systemd/system
manifest=$opt/install-manifest

run() {
  if ((dry_run)); then
    printf 'would run:'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# Records an installed path in the manifest: "<kind> <path> [sha256]" (kind: file, dir, link, user, conf).
record() {
  ((dry_run)) && return 0
  grep -qxF "$*" "$prefix$manifest.new" 2>/dev/null || printf '%s\n' "$*" >>"$prefix$manifest.new"
}

publish() {
  local out=$1 name project
  for entry in "${programs[@]}"; do
    read -r name project <<<"$entry"
    echo "install.sh: publishing $name (self-contained, $rid) into $out/$name"
    run dotnet publish "$repo/$project" -c Release -r "$rid" --self-contained -o "$out/$name" -v q -nologo \
      -p:DebugType=none -p:GenerateDocumentationFile=false
  done
}

if [[ -n $publish_only ]]; then
  publish "$(realpath -m "$publish_only")"
  exit 0
fi

if ((uninstall)); then
  if [[ ! -f $prefix$manifest ]]; then
    echo "install.sh: nothing to uninstall ($prefix$manifest does not exist)" >&2
    exit 1
  fi
  # Reverse order: files before the directories that hold them, users last.
  entries=$(tac "$prefix$manifest")
  run rm -f "$prefix$manifest"
  while read -r kind path sum; do
    case $kind in
      file | link) [[ -e $prefix$path || -L $prefix$path ]] && run rm -f "$prefix$path" ;;
      conf)
        if [[ -f $prefix$path ]] && [[ $(sha256sum <"$prefix$path" | cut -d' ' -f1) != "$sum" ]]; then
          echo "install.sh: keeping $path (edited since it was installed)"
        elif [[ -f $prefix$path ]]; then
          run rm -f "$prefix$path"
        fi
        ;;
      dir)
        if [[ -d $prefix$path ]]; then
          if [[ -z $(ls -A "$prefix$path") ]]; then run rmdir "$prefix$path"; else echo "install.sh: keeping $path (not empty)"; fi
        fi
        ;;
      tree) [[ -d $prefix$path ]] && run rm -rf "$prefix$path" ;;
      user) getent passwd "$path" >/dev/null && run userdel "$path" ;;
      group) getent group "$path" >/dev/null && run groupdel "$path" ;;
    esac
  done <<<"$entries"
  echo "install.sh: uninstalled${prefix:+ from $prefix}"
  exit 0
fi

# Directories created here (and not there before) go into the manifest, parents first.
make_dir() {
  local path=$1 mode=$2 owner=${3:-} parts="" part
  IFS=/ read -ra parts <<<"${path#/}"
  local current=""
  for part in "${parts[@]}"; do
    current="$current/$part"
    if [[ ! -d $prefix$current ]]; then
      run mkdir -m "$mode" "$prefix$current"
      record dir "$current"
    elif grep -qx "dir $current" "$prefix$manifest" 2>/dev/null; then
      record dir "$current" # ours from an earlier run: keep it in the new manifest
    fi
  done
  run chmod "$mode" "$prefix$path"
  [[ -n $owner && -z $prefix ]] && run chown "$owner" "$path"
  return 0
}

if [[ -z $prefix ]] && ((EUID != 0)); then
  echo "install.sh: installing into / needs root (or use --prefix)" >&2
  exit 1
fi
command -v sha256sum >/dev/null

published=$from
if [[ -z $published ]]; then
  published=$(mktemp -d /tmp/overlayswitch-publish.XXXXXX)
  trap 'rm -rf "$published"' EXIT
  publish "$published"
fi
if ((!dry_run)); then
  for entry in "${programs[@]}"; do
    read -r name _ <<<"$entry"
    [[ -x $published/$name/$name ]] || { echo "install.sh: $published/$name/$name is missing (publish with --publish DIR)" >&2; exit 1; }
  done
fi

# The manifest lives in /opt/overlayswitch: record the directories of that path this run creates first.
new_dirs=()
if ((!dry_run)); then
  d=""
  for part in opt overlayswitch; do
    d="$d/$part"
    [[ -d $prefix$d ]] || new_dirs+=("$d")
  done
  mkdir -p "$prefix$opt"
  : >"$prefix$manifest.new"
  for d in "${new_dirs[@]}"; do record dir "$d"; done
fi

# Users (only into the real root): system users without a login or home directory.
if [[ -z $prefix ]]; then
  for user in overlay-controller overlay-switch; do
    if ! getent passwd "$user" >/dev/null; then
      run useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
      record user "$user"
    elif grep -qx "user $user" "$manifest" 2>/dev/null; then
      record user "$user"
    fi
  done
  if getent group libvirt-qemu >/dev/null; then
    run usermod -aG libvirt-qemu overlay-switch
  fi
fi

make_dir "$opt" 0755
for entry in "${programs[@]}"; do
  read -r name _ <<<"$entry"
  # The whole published tree is replaced: nothing of an older version stays behind.
  run rm -rf "$prefix$opt/$name.new"
  run cp -a "$published/$name" "$prefix$opt/$name.new"
  run rm -rf "$prefix$opt/$name"
  run mv "$prefix$opt/$name.new" "$prefix$opt/$name"
  record tree "$opt/$name"
done
run install -m 0644 "$deploy/README.md" "$prefix$opt/README.md"
record file "$opt/README.md"
make_dir "$opt/share" 0755
run install -m 0644 "$deploy/systemd/overlay-switchd.service.d-examples/tap-namespaces.conf" "$prefix$opt/share/tap-namespaces.conf"
record file "$opt/share/tap-namespaces.conf"

# overlayctl on the PATH, reading the installed switch's status socket unless told otherwise.
make_dir /usr/local/bin 0755
if ((!dry_run)); then
  cat >"$prefix/usr/local/bin/overlayctl.new" <<EOF
#!/bin/sh
# Installed by OverlaySwitch's deploy/install.sh: overlayctl with the installed switch's status socket.
case " \$* " in *" --socket"*) exec $opt/overlayctl/overlayctl "\$@" ;; esac
exec $opt/overlayctl/overlayctl --socket /run/overlayswitch/switch/overlay-switchd.ctl "\$@"
EOF
  chmod 0755 "$prefix/usr/local/bin/overlayctl.new"
  mv "$prefix/usr/local/bin/overlayctl.new" "$prefix/usr/local/bin/overlayctl"
else
  echo "would write: $prefix/usr/local/bin/overlayctl (wrapper)"
fi
record file /usr/local/bin/overlayctl

# Configuration: examples, never over a file that is there (the admin's); the new one goes beside it.
make_dir "$etc" 0755
for conf in controller.env switch.json; do
  target=$prefix$etc/$conf
  mode=0640
  if [[ -e $target ]] && ! grep -qx "conf $etc/$conf $(sha256sum <"$target" | cut -d' ' -f1)" "$prefix$manifest" 2>/dev/null; then
    run install -m "$mode" "$deploy/config/$conf" "$target.dist"
    record file "$etc/$conf.dist"
    echo "install.sh: $etc/$conf exists and was changed; the new example is $etc/$conf.dist"
    # Still ours if the manifest says so (edited since): keep it listed so uninstall keeps it.
    prev=$(grep "^conf $etc/$conf " "$prefix$manifest" 2>/dev/null || true)
    [[ -n $prev ]] && record "$prev"
    continue
  fi
  run install -m "$mode" "$deploy/config/$conf" "$target"
  record conf "$etc/$conf" "$(sha256sum <"$deploy/config/$conf" | cut -d' ' -f1)"
done
if [[ -z $prefix ]]; then
  run chgrp overlay-controller "$etc/controller.env"
  run chgrp overlay-switch "$etc/switch.json"
fi

make_dir "$state" 0755
make_dir "$state/controller" 0700 overlay-controller:overlay-controller
make_dir "$state/switch" 0700 overlay-switch:overlay-switch

make_dir "$unitdir" 0755
for unit in overlay-controller.service overlay-switchd.service; do
  run install -m 0644 "$deploy/systemd/$unit" "$prefix$unitdir/$unit"
  record file "$unitdir/$unit"
done

if ((!dry_run)); then
  # Older manifest entries that this run did not install again (e.g. a renamed file) stay listed.
  if [[ -f $prefix$manifest ]]; then
    grep -vxFf "$prefix$manifest.new" "$prefix$manifest" >>"$prefix$manifest.new" || true
  fi
  mv "$prefix$manifest.new" "$prefix$manifest"
fi
if [[ -z $prefix ]] && ((!dry_run)) && [[ -d /run/systemd/system ]]; then
  systemctl daemon-reload
fi
echo "install.sh: installed${prefix:+ into $prefix}. Next: edit $etc/controller.env and $etc/switch.json, then systemctl enable --now overlay-controller overlay-switchd (see $opt/README.md)."
