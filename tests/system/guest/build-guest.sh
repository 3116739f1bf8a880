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
#
# /usr/bin/udpcheck (built here from the C below when a C compiler with a static libc is there)
# receives a numbered datagram stream and checks every datagram's content (the migration test's
# memory-consistency check); see its comment.
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

# udpcheck: the receiving end of the migration test's datagram stream. Datagrams are LEN bytes:
# "OVSMIG01", a 64-bit little-endian sequence number, then byte i = (seq * 131 + i * 7 + 29) & 0xff.
# The end marker is "OVSMIGEN" with the number of datagrams sent. The sender leaves the UDP
# checksum at 0, so a datagram whose bytes are wrong in guest memory (a receive buffer page that
# a live migration did not carry over because nobody logged it dirty) is delivered, not dropped,
# and caught here: a wrong pattern, a bad magic, or a sequence number read twice (an older
# datagram still in the page). A new sequence number below the highest read is reordered, not bad:
# UDP keeps no order, and frames the old host redirects after a migration arrive after those the
# peer already sends straight to the new host; they are counted. With HOLD_FILE it reads nothing until that file exists: the
# datagrams wait in the socket queue (32 MiB), their payload in the receive-buffer pages the switch
# wrote, so a migration meanwhile has to carry every one of those pages over. Then it reads in
# bursts every 100 ms. Prints
#   E2E-STREAM received=N sent=S bad=B reordered=K last=L verdict=PASS|FAIL
# at the end marker or after SECONDS, and E2E-STREAM-BAD lines for the first bad datagrams.
cat >"$WORK/udpcheck.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) { fprintf(stderr, "usage: udpcheck PORT LEN SECONDS [HOLD_FILE]\n"); return 2; }
  int port = atoi(argv[1]), len = atoi(argv[2]); double seconds = atof(argv[3]);
  const char *hold = argc == 5 ? argv[4] : 0;
  int s = socket(AF_INET, SOCK_DGRAM, 0), big = 32 << 20;
  setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("E2E-STREAM-ERROR bind"); return 2; }
  printf("E2E-STREAM-LISTENING port=%d len=%d\n", port, len); fflush(stdout);
  static unsigned char buf[65536];
  enum { MAX_SEQ = 1 << 22 };
  static unsigned char seen[MAX_SEQ / 8];
  long received = 0, bad = 0, reordered = 0, sent = -1; uint64_t last = 0; int have = 0;
  double end = now() + seconds;
  while (sent < 0 && now() < end) {
    struct timespec nap = { 0, 100 * 1000 * 1000 };
    nanosleep(&nap, 0);
    if (hold && access(hold, F_OK) != 0) continue;
    for (;;) {
      ssize_t n = recv(s, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0) break;
      if (n >= 24 && memcmp(buf, "OVSMIGEN", 8) == 0) { memcpy(&sent, buf + 8, 8); continue; }
      uint64_t seq; memcpy(&seq, buf + 8, 8);
      const char *why = 0; int at = -1;
      if (n != len) why = "length";
      else if (memcmp(buf, "OVSMIG01", 8) != 0) why = "magic";
      else {
        for (int i = 16; i < len; i++)
          if (buf[i] != (unsigned char)(seq * 131 + i * 7 + 29)) { why = "pattern"; at = i; break; }
      }
      if (!why && seq >= MAX_SEQ) why = "range";
      else if (!why && (seen[seq / 8] >> (seq % 8)) & 1) why = "duplicate";
      if (why) {
        if (bad < 10) printf("E2E-STREAM-BAD seq=%llu after=%llu reason=%s offset=%d len=%zd\n",
                             (unsigned long long)seq, (unsigned long long)last, why, at, n);
        bad++;
        continue;
      }
      seen[seq / 8] |= (unsigned char)(1 << (seq % 8));
      received++;
      if (have && seq < last) { reordered++; continue; }
      last = seq; have = 1;
    }
  }
  printf("E2E-STREAM received=%ld sent=%ld bad=%ld reordered=%ld last=%llu verdict=%s\n", received, sent, bad, reordered,
         (unsigned long long)last, bad == 0 && sent > 0 ? "PASS" : "FAIL");
  fflush(stdout);
  return bad == 0 ? 0 : 1;
}
EOF
CC_BIN=$(command -v cc || command -v gcc || true)
if [ -n "$CC_BIN" ] && "$CC_BIN" -O2 -static -o "$STAGE/usr/bin/udpcheck" "$WORK/udpcheck.c" 2>"$WORK/cc.log"; then
  :
else
  echo "build-guest: no udpcheck in the guest (no C compiler with a static libc: $(cat "$WORK/cc.log" 2>/dev/null | head -3))" >&2
fi

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
