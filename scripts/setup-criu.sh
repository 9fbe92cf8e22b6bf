#!/usr/bin/env bash
# Make a CRIU >= 4.2 usable by Docker's checkpoint API (dockerd -> containerd -> runc -> criu).
#
# CRIU 3.x fails on kernels >= 6 (vDSO); CRIU 4.1 cannot dump a process that holds a network
# socket on recent kernels ("Can't get 1:16 opt", CRIU issues 2705/2718); 4.2 can.
# If the system has a `criu` >= 4.2 whose `criu check` passes, nothing is done. Otherwise CRIU and the
# libraries it needs are taken from Debian forky (same mirror as this system's apt configuration),
# through a PRIVATE apt sources list and state directory, unpacked with `dpkg-deb -x` into
# $TVCACHE_CRIU_PREFIX (default /opt/tvcache/criu) and run through that prefix's own dynamic loader.
# The system's libc, dpkg database and apt configuration are left untouched.
#
# Result: $PREFIX/bin/criu, a wrapper to put FIRST on dockerd's PATH (scripts/setup-docker.sh does).
# Idempotent: a second run prints nothing. Environment:
#   TVCACHE_CRIU_PREFIX    install prefix (default /opt/tvcache/criu)
#   TVCACHE_DEBIAN_MIRROR  Debian mirror URI to use instead of the one read from /etc/apt
#   TVCACHE_CRIU_SUITE     Debian suite to take CRIU from (default forky)
#   TVCACHE_CRIU_FORCE=1   install the private CRIU even if a system criu passes `criu check`
set -euo pipefail

PREFIX=${TVCACHE_CRIU_PREFIX:-/opt/tvcache/criu}
SUITE=${TVCACHE_CRIU_SUITE:-forky}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
WRAPPER=$PREFIX/bin/criu
ROOT=$PREFIX/root
ARCH_TRIPLET=x86_64-linux-gnu

die() { echo "setup-criu: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (CRIU and Docker checkpointing need root)."
[ "$(uname -m)" = x86_64 ] || die "only x86_64 is supported (found $(uname -m))."

# `criu check` prints "Looks good." (exit 0) when everything needed for dump/restore is there.
# Warnings about optional features (e.g. soft-dirty memory tracking, which only incremental
# pre-dumps need; Docker never uses them) make it print "Looks good but ..." and still exit 0.
criu_ok() { # $1 = criu executable: version >= 4.2 and `criu check` passes
    local v major minor
    v=$("$1" --version 2>/dev/null | sed -n 's/^Version: *\([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -n1)
    read -r major minor <<<"${v:-0 0}"
    [ "$major" -gt 4 ] || { [ "$major" -eq 4 ] && [ "$minor" -ge 2 ]; } || return 1
    "$1" check >/dev/null 2>&1
}
criu_major() { "$1" --version 2>/dev/null | sed -n 's/^Version: *\([0-9]*\).*/\1/p' | head -n1; }

# 1. A working system criu (not our wrapper): nothing to do.
if [ "${TVCACHE_CRIU_FORCE:-0}" != 1 ]; then
    for c in $(type -ap criu 2>/dev/null || true); do
        [ "$c" = "$WRAPPER" ] && continue
        if criu_ok "$c"; then exit 0; fi
    done
fi

# 2. Our private CRIU is already installed and works: nothing to do.
if [ -x "$WRAPPER" ] && criu_ok "$WRAPPER" && [ "$(criu_major "$WRAPPER")" -ge 4 ] 2>/dev/null; then
    exit 0
fi

command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian-based system."
command -v dpkg-deb >/dev/null || die "dpkg-deb not found: install dpkg."
[ -r "$KEYRING" ] || die "$KEYRING missing: run 'apt-get install debian-archive-keyring'."

mkdir -p "$PREFIX"
exec 9>"$PREFIX/.lock"
flock 9 # another run in parallel: wait for it, then re-check below
if [ -x "$WRAPPER" ] && criu_ok "$WRAPPER" && [ "$(criu_major "$WRAPPER")" -ge 4 ] 2>/dev/null; then
    exit 0
fi

# shellcheck source-path=SCRIPTDIR source=debian-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/debian-mirror.sh"
if [ -n "${TVCACHE_DEBIAN_MIRROR:-}" ]; then
    MIRROR=${TVCACHE_DEBIAN_MIRROR%/}
else
    MIRROR=$(find_mirror) || die "could not find this system's Debian mirror in /etc/apt/sources.list{,.d/*}; set TVCACHE_DEBIAN_MIRROR=http://<mirror>/debian and re-run."
fi

WORK=$PREFIX/.apt
LOG=$PREFIX/install.log
rm -rf "$WORK"
mkdir -p "$WORK/etc/apt.conf.d" "$WORK/etc/preferences.d" "$WORK/etc/sources.list.d" \
    "$WORK/state/lists/partial" "$WORK/cache/archives/partial" "$WORK/debs"
echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" >"$WORK/etc/sources.list"
: >"$WORK/empty-status"
APTOPTS=(-o "Dir::Etc::SourceList=$WORK/etc/sources.list" -o "Dir::Etc::SourceParts=$WORK/etc/sources.list.d"
    -o "Dir::Etc::Parts=$WORK/etc/apt.conf.d" -o "Dir::Etc::PreferencesParts=$WORK/etc/preferences.d"
    -o "Dir::State=$WORK/state" -o "Dir::State::status=$WORK/empty-status" -o "Dir::Cache=$WORK/cache"
    -o "APT::Architecture=amd64" -o "APT::Architectures=amd64" -o "Debug::NoLocking=1")

: >"$LOG"
apt-get -q "${APTOPTS[@]}" update >>"$LOG" 2>&1 ||
    die "'apt-get update' of the private $SUITE source ($MIRROR) failed; see $LOG. Is the Debian mirror reachable?"

# criu and the closure of its hard dependencies, all from $SUITE.
mapfile -t PKGS < <(apt-cache "${APTOPTS[@]}" depends --recurse --no-recommends --no-suggests \
    --no-conflicts --no-breaks --no-replaces --no-enhances criu 2>>"$LOG" | grep -v '^[ <]' | sort -u)
printf '%s\n' "${PKGS[@]}" | grep -qx criu ||
    die "package 'criu' not found in Debian $SUITE at $MIRROR; see $LOG."
(cd "$WORK/debs" && apt-get -q "${APTOPTS[@]}" download "${PKGS[@]}") >>"$LOG" 2>&1 ||
    die "downloading ${PKGS[*]} from Debian $SUITE failed; see $LOG."

rm -rf "$ROOT.new"
mkdir -p "$ROOT.new"
for deb in "$WORK"/debs/*.deb; do
    dpkg-deb -x "$deb" "$ROOT.new" || die "unpacking $deb failed."
done

LOADER=""
for l in usr/lib64/ld-linux-x86-64.so.2 lib64/ld-linux-x86-64.so.2 usr/lib/$ARCH_TRIPLET/ld-linux-x86-64.so.2; do
    if [ -e "$ROOT.new/$l" ]; then LOADER=$l; break; fi
done
[ -n "$LOADER" ] || die "no ld-linux-x86-64.so.2 in the unpacked libc6 under $ROOT.new."
CRIU_BIN=""
for b in usr/sbin/criu sbin/criu usr/bin/criu; do
    if [ -x "$ROOT.new/$b" ]; then CRIU_BIN=$b; break; fi
done
[ -n "$CRIU_BIN" ] || die "no criu binary in the unpacked criu package under $ROOT.new."

rm -rf "$ROOT.old"
[ -e "$ROOT" ] && mv "$ROOT" "$ROOT.old"
mv "$ROOT.new" "$ROOT"
rm -rf "$ROOT.old"

mkdir -p "$PREFIX/bin"
cat >"$WRAPPER.tmp" <<EOF
#!/bin/sh
# Generated by tvcache scripts/setup-criu.sh: CRIU from Debian $SUITE, run through its own loader.
R=$ROOT
exec "\$R/$LOADER" --library-path "\$R/usr/lib/$ARCH_TRIPLET:\$R/lib/$ARCH_TRIPLET" "\$R/$CRIU_BIN" "\$@"
EOF
chmod 755 "$WRAPPER.tmp"
mv "$WRAPPER.tmp" "$WRAPPER"
rm -rf "$WORK"

"$WRAPPER" --version >/dev/null 2>>"$LOG" || die "$WRAPPER --version failed; see $LOG."
major=$(criu_major "$WRAPPER")
[ "${major:-0}" -ge 4 ] || die "$WRAPPER reports version '$major', expected >= 4."
if ! out=$("$WRAPPER" check 2>&1); then
    echo "$out" >&2
    die "'$WRAPPER check' failed (output above): this kernel lacks something CRIU needs; Docker checkpoints will not work."
fi
