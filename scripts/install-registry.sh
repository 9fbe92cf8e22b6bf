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
sh "$(dirname "$0")/install-debian-package.sh" docker-registry docker-registry
if command -v docker-registry >/dev/null 2>&1 && command -v systemctl >/dev/null 2>&1 \
    && [ -d /run/systemd/system ]; then
    if [ "$(id -u)" -eq 0 ]; then
        systemctl disable --now docker-registry >/dev/null 2>&1 || true
    else
        sudo -n systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
fi
