#!/bin/sh
# Install the PostgreSQL server binaries the integration tests start a private, throwaway
# cluster from (tests/integration/conftest.py). Idempotent and quiet: does nothing when the
# binaries are there; never starts a service nor creates the distribution's main cluster.
set -eu

if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive

as_root() {  # sudo drops the environment: pass DEBIAN_FRONTEND on explicitly
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo env DEBIAN_FRONTEND=noninteractive "$@"; fi
}

# No service start while installing (policy-rc.d), and no main cluster: postgresql-common
# first, then its createcluster.conf says no, then the server.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    trap 'as_root rm -f "$policy"' EXIT
fi

as_root apt-get update -qq >/dev/null
as_root apt-get install -y -qq --no-install-recommends postgresql-common >/dev/null
as_root pg_conftool /etc/postgresql-common/createcluster.conf set create_main_cluster off
as_root apt-get install -y -qq --no-install-recommends postgresql >/dev/null

ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || {
    echo "install-postgres.sh: postgresql installed but no initdb under /usr/lib/postgresql" >&2
    exit 1
}
