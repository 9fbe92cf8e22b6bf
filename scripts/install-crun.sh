#!/bin/sh
# Install crun, the OCI runtime (C, no Go runtime start) that fs sandboxes of the Docker backend
# start through when it is installed (sandbox/_runc.py; runc is the fallback). Idempotent and
# quiet: does nothing when crun is already there.
# Without root or sudo it prints what to run and exits 0: `tvcache doctor` then says runc is
# the OCI runtime in use.
set -eu

if command -v crun >/dev/null 2>&1; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -eq 0 ]; then
    as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root() { sudo env DEBIAN_FRONTEND=noninteractive "$@"; }
else
    echo "install-crun.sh: not root and no passwordless sudo;" \
        "install it yourself: sudo apt-get install crun" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-crun.sh: no apt-get; install crun with your package manager" >&2
    exit 0
fi

as_root apt-get install -y -qq --no-install-recommends crun >/dev/null 2>&1 || {
    as_root apt-get update -qq >/dev/null
    as_root apt-get install -y -qq --no-install-recommends crun >/dev/null
}
command -v crun >/dev/null 2>&1 || {
    echo "install-crun.sh: crun installed but not on PATH" >&2
    exit 1
}
