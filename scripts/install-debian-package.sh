#!/bin/sh
# Usage: install-debian-package.sh PACKAGE COMMAND
# Install Debian's PACKAGE unless COMMAND is already on PATH. Idempotent and quiet. Without
# root or passwordless sudo, or without apt-get, it says what to run and exits 0 (the part
# that needs COMMAND then reports it missing: `tvcache doctor`, the tests' skip or CI failure).
set -eu

package=$1
command=$2
if command -v "$command" >/dev/null 2>&1; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -eq 0 ]; then
    as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root() { sudo env DEBIAN_FRONTEND=noninteractive "$@"; }
else
    echo "install $package: not root and no passwordless sudo;" \
        "install it yourself: sudo apt-get install $package" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install $package: no apt-get; install it with your package manager" >&2
    exit 0
fi

as_root apt-get install -y -qq --no-install-recommends "$package" >/dev/null 2>&1 || {
    as_root apt-get update -qq >/dev/null
    as_root apt-get install -y -qq --no-install-recommends "$package" >/dev/null
}
command -v "$command" >/dev/null 2>&1 || {
    echo "install $package: installed but no $command on PATH" >&2
    exit 1
}
