#!/usr/bin/env bash
# Build the terminal-task images of `tvcache bench terminal`:
#   tvcache/base:bookworm          (docker/base/build.sh, only if missing)
#   tvcache/tasks-common:bookworm  (Dockerfile.common: the apt packages every task shares)
#   tvcache/task-<name>:latest     (one per directory docker/tasks/<name>/)
#
# usage: docker/tasks/build.sh [--force] [NAME...]
#   NAME...   only these tasks (default: every directory here)
#   --force   rebuild the common image and the selected task images even if they are up to date,
#             without Docker's layer cache (fresh apt packages)
#
# Idempotent: an image is rebuilt only when it is missing or when the files it is built from (its
# task directory, Dockerfile.common, the parent image) changed since; that fingerprint is stored in
# the image's label tvcache.build.hash. Prints one line per built image and the total time.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BASE=tvcache/base:bookworm
COMMON=tvcache/tasks-common:bookworm
LOG=${TMPDIR:-/tmp}/tvcache-tasks-build.log

die() { echo "docker/tasks/build.sh: ERROR: $*" >&2; exit 1; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
label() { docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }
image_id() { docker image inspect -f '{{.Id}}' "$1"; }
size_mb() { echo $(($(docker image inspect -f '{{.Size}}' "$1") / 1000000)); }
# Fingerprint of a build: the parent image id plus every file of the build context.
fingerprint() { # parent-image file-or-dir...
    {
        image_id "$1"
        shift
        for path in "$@"; do
            (cd "$(dirname "$path")" && find "$(basename "$path")" -type f -print0 | sort -z |
                xargs -0 sha256sum)
        done
    } | sha256sum | cut -c1-16
}

force=0
names=()
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $arg (see --help)" ;;
        *) names+=("$arg") ;;
    esac
done
if [ ${#names[@]} -eq 0 ]; then
    for dir in "$HERE"/*/; do names+=("$(basename "$dir")"); done
fi
for name in "${names[@]}"; do
    [ -f "$HERE/$name/Dockerfile" ] || die "no task '$name': $HERE/$name/Dockerfile does not exist."
done

docker info >/dev/null 2>&1 || "$REPO/scripts/setup-docker.sh" ||
    die "no Docker daemon answers and scripts/setup-docker.sh failed."

start=$EPOCHREALTIME
: >"$LOG"
built=0

if ! have_image "$BASE"; then
    "$REPO/docker/base/build.sh" || die "building $BASE failed."
fi

since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# build IMAGE HASH DOCKERFILE [CONTEXT]   (no CONTEXT: the Dockerfile alone, on stdin)
build() {
    local t0=$EPOCHREALTIME old=""
    old=$(docker image inspect -f '{{.Id}}' "$1" 2>/dev/null) || true
    # Legacy builder (no buildx here); host network for apt-get inside the build only. Containers
    # of these images run with --network none.
    local args=(--network host --force-rm --label "tvcache.build.hash=$2" -t "$1")
    [ $force = 0 ] || args+=(--no-cache)
    if [ $# -ge 4 ]; then
        DOCKER_BUILDKIT=0 docker build "${args[@]}" -f "$3" "$4" >>"$LOG" 2>&1
    else
        DOCKER_BUILDKIT=0 docker build "${args[@]}" - <"$3" >>"$LOG" 2>&1
    fi || die "docker build of $1 failed; see $LOG."
    # The replaced image, now untagged: remove it unless something (a container, a child) uses it.
    if [ -n "$old" ] && [ "$old" != "$(image_id "$1")" ]; then
        docker rmi "$old" >>"$LOG" 2>&1 || true
    fi
    printf 'built %-36s %5s MB %6s s\n' "$1" "$(size_mb "$1")" "$(since "$t0")"
    built=$((built + 1))
}

old_common=$(docker image inspect -f '{{.Id}}' "$COMMON" 2>/dev/null) || true
hash=$(fingerprint "$BASE" "$HERE/Dockerfile.common")
if [ $force = 1 ] || [ "$(label "$COMMON" tvcache.build.hash)" != "$hash" ]; then
    build "$COMMON" "$hash" "$HERE/Dockerfile.common"
fi

for name in "${names[@]}"; do
    image="tvcache/task-$name:latest"
    hash=$(fingerprint "$COMMON" "$HERE/$name")
    if [ $force = 1 ] || [ "$(label "$image" tvcache.build.hash)" != "$hash" ]; then
        build "$image" "$hash" "$HERE/$name/Dockerfile" "$HERE/$name"
    fi
done

# A replaced common image goes once no task image is built on it any more.
if [ -n "$old_common" ] && [ "$old_common" != "$(image_id "$COMMON")" ]; then
    docker rmi "$old_common" >>"$LOG" 2>&1 || true
fi

if [ $built -gt 0 ]; then
    echo "$built image(s) built in $(since "$start") s (log: $LOG)"
fi
