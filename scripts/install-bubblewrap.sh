#!/bin/sh
# Install bubblewrap (bwrap), which the local backend uses to isolate every command it runs
# (sandbox/_isolation.py). Idempotent and quiet: does nothing when bwrap is already there.
# Without root or sudo it prints what to run and exits 0: `tvcache doctor` then says isolation
# is unavailable and `tvcache serve` refuses the local backend.
set -eu

if command -v bwrap >/dev/null 2>&1; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -eq 0 ]; then
    as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root() { sudo env DEBIAN_FRONTEND=noninteractive "$@"; }
else
    echo "install-bubblewrap.sh: not root and no passwordless sudo;" \
        "install it yourself: sudo apt-get install bubblewrap" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-bubblewrap.sh: no apt-get; install bubblewrap with your package manager" >&2
    exit 0
fi

as_root apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null 2>&1 || {
    as_root apt-get update -qq >/dev/null
    as_root apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null
}
command -v bwrap >/dev/null 2>&1 || {
    echo "install-bubblewrap.sh: bubblewrap installed but no bwrap on PATH" >&2
    exit 1
}
