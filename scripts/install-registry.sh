#!/bin/sh
# Install Docker's registry (Debian's docker-registry package: the CNCF Distribution server),
# which carries tvcache snapshots between hosts (snapshots/registry.py). Idempotent and quiet:
# does nothing when docker-registry is already there. The package's own service is not needed
# (tests start `docker-registry serve <config>` on a free port); where policy-rc.d allows it
# to start, it is stopped again so that port 5000 stays free.
# Without root or sudo it prints what to run and exits 0; the tests that need it then skip
# (and fail under CI=true).
set -eu

if command -v docker-registry >/dev/null 2>&1; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -eq 0 ]; then
    as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root() { sudo env DEBIAN_FRONTEND=noninteractive "$@"; }
else
    echo "install-registry.sh: not root and no passwordless sudo;" \
        "install it yourself: sudo apt-get install docker-registry" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-registry.sh: no apt-get; install Docker's registry (distribution) yourself" >&2
    exit 0
fi

as_root apt-get install -y -qq --no-install-recommends docker-registry >/dev/null 2>&1 || {
    as_root apt-get update -qq >/dev/null
    as_root apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
}
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    as_root systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
command -v docker-registry >/dev/null 2>&1 || {
    echo "install-registry.sh: docker-registry installed but not on PATH" >&2
    exit 1
}
