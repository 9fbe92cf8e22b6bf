#!/usr/bin/env bash
# Build the sandbox base image tvcache/base:bookworm without any registry pull:
#   1. debootstrap --variant=minbase bookworm into a temp dir (this host's Debian mirror),
#   2. tar | docker import  ->  tvcache/base:bookworm-rootfs,
#   3. docker build docker/base/Dockerfile (FROM the rootfs image)  ->  tvcache/base:bookworm.
# Idempotent: does nothing (and prints nothing) if tvcache/base:bookworm exists.
# Environment:
#   TVCACHE_REBUILD=1      rebuild both images even if they exist
#   TVCACHE_DEBIAN_MIRROR  Debian mirror URI instead of the one read from /etc/apt
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SUITE=bookworm
ROOTFS_IMAGE=tvcache/base:$SUITE-rootfs
IMAGE=tvcache/base:$SUITE
LOG=${TMPDIR:-/tmp}/tvcache-base-build.log

die() { echo "docker/base/build.sh: ERROR: $*" >&2; exit 1; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and docker need it)."

if ! docker info >/dev/null 2>&1; then
    "$REPO/scripts/setup-docker.sh" || die "no Docker daemon answers and scripts/setup-docker.sh failed."
fi

if [ "${TVCACHE_REBUILD:-0}" != 1 ] && have_image "$IMAGE"; then
    exit 0
fi

# shellcheck source-path=SCRIPTDIR/../../scripts source=debian-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/debian-mirror.sh"

start=$(date +%s)
: >"$LOG"

if [ "${TVCACHE_REBUILD:-0}" = 1 ] || ! have_image "$ROOTFS_IMAGE"; then
    if ! command -v debootstrap >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >>"$LOG" 2>&1 ||
            { apt-get update -q >>"$LOG" 2>&1 &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >>"$LOG" 2>&1; } ||
            die "could not install debootstrap with apt-get; see $LOG."
    fi
    if [ -n "${TVCACHE_DEBIAN_MIRROR:-}" ]; then
        MIRROR=${TVCACHE_DEBIAN_MIRROR%/}
    else
        MIRROR=$(find_mirror) || die "could not find this system's Debian mirror in /etc/apt; set TVCACHE_DEBIAN_MIRROR=http://<mirror>/debian."
    fi
    ROOTFS=$(mktemp -d /var/tmp/tvcache-rootfs.XXXXXX)
    trap 'rm -rf "$ROOTFS"' EXIT
    debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        "$SUITE" "$ROOTFS" "$MIRROR" >>"$LOG" 2>&1 ||
        die "debootstrap $SUITE from $MIRROR failed; see $LOG (and $ROOTFS/debootstrap/debootstrap.log)."
    # The image's own apt sources: the same mirror, plus -updates and -security as the host has them.
    {
        echo "deb $MIRROR $SUITE main"
        echo "deb $MIRROR $SUITE-updates main"
        if sec=$(find_mirror "$SUITE-security"); then echo "deb $sec $SUITE-security main"; fi
    } >"$ROOTFS/etc/apt/sources.list"
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/log/*.log \
        "$ROOTFS"/var/log/apt/* "$ROOTFS"/etc/hostname "$ROOTFS"/etc/machine-id
    : >"$ROOTFS/etc/machine-id"
    tar --numeric-owner -C "$ROOTFS" -c . |
        docker import --message "tvcache: debootstrap --variant=minbase $SUITE" \
            --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$ROOTFS_IMAGE" >>"$LOG" 2>&1 ||
        die "docker import of the $SUITE root file system failed; see $LOG."
    rm -rf "$ROOTFS"
    trap - EXIT
fi

# Legacy builder: Docker 20.10's daemon with a client that may lack the buildx plugin. Host network
# for the apt-get inside the build (no dependence on the bridge's NAT).
DOCKER_BUILDKIT=0 docker build --network host --force-rm -t "$IMAGE" -f "$HERE/Dockerfile" "$HERE" >>"$LOG" 2>&1 ||
    die "docker build of $IMAGE failed; see $LOG."

size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
echo "built $IMAGE ($((size / 1000000)) MB) in $(($(date +%s) - start)) s"
