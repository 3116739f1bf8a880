#!/usr/bin/env bash
# build-guest.sh - builds the tiny Linux guest the system tests boot in QEMU (TCG) on a
# vhost-user port: the host's Debian kernel plus an initramfs with busybox-static, the
# virtio-net modules, iputils ping (as /usr/bin/iping, for "ping -M do") and the /init below.
# Adapted from shared/e2e-recipe/build-guest.sh.
#
# Output: $CACHE_ROOT/<kernel version>-<hash of this script and its inputs>/{vmlinuz,initramfs.cpio.gz}.
# A guest that is already there is reused, so repeated runs cost nothing. The last line printed
# on stdout is that directory. Needs (test.sh installs them): linux-image-amd64, busybox-static,
# iputils-ping, cpio, gzip.
#
# The guest is driven from the kernel command line and, once its eth0 is up, over its serial
# console (see /init): e2e.ip=10.0.0.1/24, e2e.mtu=N (set on eth0, else it keeps the device's),
# e2e.mode=cmd (default) | shell.
#
# In mode "cmd" /init prints "E2E-READY" and then reads lines "<id> <shell command>" from the
# console; for each it prints "E2E-BEGIN <id>", the command's output and "E2E-END <id> rc=<n>".
set -euo pipefail

CACHE_ROOT=${CACHE_ROOT:-/tmp/overlayswitch-guest}
BUSYBOX=${BUSYBOX:-/bin/busybox}
MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net"

die() { echo "build-guest: $*" >&2; exit 1; }

# The newest kernel that has both an image in /boot and its modules (the running kernel may be
# neither: on a VM host it is often not a Debian one).
KVER=${KVER:-}
if [ -z "$KVER" ]; then
  for k in $(ls /lib/modules 2>/dev/null | sort -V -r); do
    if [ -r "/boot/vmlinuz-$k" ] && [ -r "/lib/modules/$k/modules.dep" ]; then KVER=$k; break; fi
  done
fi
[ -n "$KVER" ] || die "no kernel with /boot/vmlinuz-* and /lib/modules/* (install linux-image-amd64)"
KERNEL=/boot/vmlinuz-$KVER
MODDIR=/lib/modules/$KVER
{ ldd "$BUSYBOX" 2>&1 || true; } | grep -q 'not a dynamic' || die "$BUSYBOX is not static (install busybox-static)"

# iputils ping: the host's if it is iputils, else one unpacked from a downloaded .deb.
PING_BIN=
for p in /usr/bin/ping /bin/ping; do
  if [ -x "$p" ] && { "$p" -V 2>&1 || true; } | grep -q iputils; then PING_BIN=$p; break; fi
done
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"
flock -w 300 9 || die "timed out waiting for $CACHE_ROOT/.lock"
if [ -z "$PING_BIN" ]; then
  mkdir -p "$CACHE_ROOT/deb"
  deb=$(ls "$CACHE_ROOT"/deb/iputils-ping_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    (cd "$CACHE_ROOT/deb" && timeout 120 apt-get download iputils-ping >/dev/null 2>&1) || true
    deb=$(ls "$CACHE_ROOT"/deb/iputils-ping_*.deb 2>/dev/null | head -1 || true)
  fi
  [ -n "$deb" ] || die "no iputils ping (install iputils-ping); busybox ping has no -M do"
  rm -rf "$CACHE_ROOT/deb/x" && dpkg-deb -x "$deb" "$CACHE_ROOT/deb/x"
  PING_BIN=$(ls "$CACHE_ROOT"/deb/x/bin/ping "$CACHE_ROOT"/deb/x/usr/bin/ping 2>/dev/null | head -1 || true)
  [ -n "$PING_BIN" ] || die "no ping in $deb"
fi

KEY=$( { cat "$0"; echo "$KVER"; sha256sum "$KERNEL" "$BUSYBOX" "$PING_BIN"; } | sha256sum | cut -c1-12)
OUT=$CACHE_ROOT/$KVER-$KEY
if [ -r "$OUT/vmlinuz" ] && [ -r "$OUT/initramfs.cpio.gz" ]; then
  echo "$OUT"
  exit 0
fi

WORK=$(mktemp -d "$CACHE_ROOT/.stage.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STAGE=$WORK/root
mkdir -p "$STAGE"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,lib/modules}

cp "$BUSYBOX" "$STAGE/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [ -e "$STAGE/bin/$applet" ] || ln -s busybox "$STAGE/bin/$applet"
done

# Modules for virtio-net over PCI, in dependency order (closure of modules.dep on Debian 12).
for m in $MODULES; do
  rel=$(grep -E "/$m\.ko(\.[a-z]+)?:" "$MODDIR/modules.dep" | head -1 | cut -d: -f1 || true)
  [ -n "$rel" ] || die "module $m not in $MODDIR/modules.dep"
  case "$rel" in
    *.ko) cp "$MODDIR/$rel" "$STAGE/lib/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$MODDIR/$rel" >"$STAGE/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -dc "$MODDIR/$rel" >"$STAGE/lib/modules/$m.ko" ;;
    *) die "unknown module format $rel" ;;
  esac
done
echo "$MODULES" >"$STAGE/lib/modules/order"

cp "$PING_BIN" "$STAGE/usr/bin/iping"
for lib in $(ldd "$PING_BIN" | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
  [ -f "$lib" ] || continue
  mkdir -p "$STAGE/$(dirname "$lib")"
  cp -L "$lib" "$STAGE/$lib"
done

cat >"$STAGE/init" <<'EOF'
#!/bin/sh
# /init of the system-test guest (PID 1). Every line that matters starts with "E2E-".
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
up() { cut -d' ' -f1 /proc/uptime; }
echo "E2E-INIT uptime=$(up)s"

IP= MTU= MODE=cmd
for p in $(cat /proc/cmdline); do
  case "$p" in
    e2e.ip=*) IP=${p#e2e.ip=} ;;
    e2e.mtu=*) MTU=${p#e2e.mtu=} ;;
    e2e.mode=*) MODE=${p#e2e.mode=} ;;
  esac
done

for m in $(cat /lib/modules/order); do
  insmod /lib/modules/$m.ko || echo "E2E-ERROR insmod $m failed"
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
[ -e /sys/class/net/eth0 ] || { echo "E2E-ERROR no eth0"; poweroff -f; }
# No IPv6 chatter (router solicitations, MLD, DAD) in the counters the tests read.
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null
echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 2>/dev/null
echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6 2>/dev/null
ip link set lo up
[ -n "$MTU" ] && ip link set eth0 mtu "$MTU"
[ -n "$IP" ] && ip addr add "$IP" dev eth0
ip link set eth0 up
echo "E2E-NET-UP uptime=$(up)s ip=$IP mac=$(cat /sys/class/net/eth0/address) mtu=$(cat /sys/class/net/eth0/mtu)"
echo "E2E-FEATURES $(cat /sys/class/net/eth0/device/features 2>/dev/null)"

# waitpeer IP SECONDS: one ping a second until IP answers.
waitpeer() {
  t=0
  while [ $t -lt "$2" ]; do
    if iping -c 1 -W 1 "$1" >/dev/null 2>&1; then echo "E2E-PEER-REACHABLE $1 after ${t}s"; return 0; fi
    t=$((t+1))
  done
  echo "E2E-PEER-UNREACHABLE $1 after ${2}s"; return 1
}

case "$MODE" in
  cmd)
    stty -echo 2>/dev/null
    echo "E2E-READY"
    while read -r id cmd; do
      [ -n "$id" ] || continue
      echo "E2E-BEGIN $id"
      eval "$cmd" </dev/null 2>&1
      echo "E2E-END $id rc=$?"
    done
    ;;
  shell)
    setsid cttyhack sh ;;
esac
echo "E2E-DONE uptime=$(up)s"
poweroff -f
EOF
chmod +x "$STAGE/init"

(cd "$STAGE" && find . -print0 | cpio --null -o -H newc --quiet | gzip -6) >"$WORK/initramfs.cpio.gz"
cp "$KERNEL" "$WORK/vmlinuz"
mkdir -p "$WORK/out" && mv "$WORK/initramfs.cpio.gz" "$WORK/vmlinuz" "$WORK/out/"
rm -rf "$OUT" && mv "$WORK/out" "$OUT"
echo "build-guest: built $OUT (kernel $KVER, initramfs $(stat -c %s "$OUT/initramfs.cpio.gz") bytes)" >&2
echo "$OUT"
