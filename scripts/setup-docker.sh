#!/usr/bin/env bash
# Make a Docker daemon answer on this machine, able to `docker checkpoint` (CRIU) containers.
#
# If `docker info` already answers, nothing is done. Otherwise: make CRIU usable (scripts/setup-criu.sh),
# install Debian's docker.io if `dockerd` is missing, start `dockerd` in the background (no systemd
# here) with experimental features on (needed by `docker checkpoint`) and the private CRIU wrapper
# directory FIRST on its PATH (runc, started by containerd under dockerd, executes `criu` from PATH),
# then wait until `docker info` answers. Log: /var/log/tvcache-dockerd.log.
#
# Found on this kind of machine (Debian bookworm, kernel 6.x, cgroup v1, ext4): the defaults work:
# storage driver overlay2, cgroup driver cgroupfs, iptables (nft) bridge networking. No
# /etc/docker/daemon.json is written: `--experimental` is passed on the command line (passing it
# both ways makes dockerd refuse to start, so it is left out when daemon.json already sets it).
# Idempotent: a second run prints nothing. Environment:
#   TVCACHE_CRIU_PREFIX        CRIU prefix (default /opt/tvcache/criu)
#   TVCACHE_DOCKERD_LOG        dockerd log file (default /var/log/tvcache-dockerd.log)
#   TVCACHE_DOCKERD_WAIT       seconds to wait for the daemon (default 60)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CRIU_PREFIX=${TVCACHE_CRIU_PREFIX:-/opt/tvcache/criu}
LOG=${TVCACHE_DOCKERD_LOG:-/var/log/tvcache-dockerd.log}
WAIT=${TVCACHE_DOCKERD_WAIT:-60}
DAEMON_JSON=/etc/docker/daemon.json

die() { echo "setup-docker: ERROR: $*" >&2; exit 1; }
docker_up() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }
warn_if_not_experimental() {
    if [ "$(docker info --format '{{.ExperimentalBuild}}' 2>/dev/null)" != true ]; then
        echo "setup-docker: WARNING: the running Docker daemon is not in experimental mode, so 'docker checkpoint' (full snapshots) will fail; restart it with --experimental." >&2
    fi
}

if docker_up; then
    warn_if_not_experimental
    exit 0
fi

[ "$(id -u)" = 0 ] || die "no Docker daemon answers and starting one needs root; run as root or start dockerd yourself."

# CRIU first, so the wrapper exists before dockerd (and its containerd and runc) start.
"$HERE/setup-criu.sh" || die "scripts/setup-criu.sh failed (see above); fix CRIU first."

if ! command -v dockerd >/dev/null; then
    APTLOG=$(mktemp /tmp/tvcache-docker-apt.XXXXXX)
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io >>"$APTLOG" 2>&1; }
    if ! apt_install; then
        apt-get update -q >>"$APTLOG" 2>&1 || die "'apt-get update' failed; see $APTLOG."
        apt_install || die "'apt-get install docker.io' failed; see $APTLOG."
    fi
    rm -f "$APTLOG"
    command -v dockerd >/dev/null || die "docker.io was installed but no 'dockerd' is on PATH."
fi
command -v docker >/dev/null || die "no 'docker' client on PATH; install docker.io (or docker-ce-cli)."

# A dockerd already starting (pid file of a live dockerd): wait for it instead of starting another.
running=""
if [ -r /var/run/docker.pid ]; then
    pid=$(cat /var/run/docker.pid 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then running=$pid; fi
fi

if [ -z "$running" ]; then
    args=()
    if ! { [ -r "$DAEMON_JSON" ] && grep -q '"experimental"' "$DAEMON_JSON"; }; then
        args+=(--experimental)
    fi
    mkdir -p "$(dirname "$LOG")"
    echo "=== $(date -u +%FT%TZ) tvcache setup-docker: starting dockerd ${args[*]}" >>"$LOG"
    # setsid + nohup: the daemon outlives this script and the shell that ran it.
    PATH="$CRIU_PREFIX/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        setsid nohup dockerd "${args[@]}" >>"$LOG" 2>&1 </dev/null &
    running=$!
fi

for _ in $(seq "$WAIT"); do
    if docker_up; then
        warn_if_not_experimental
        exit 0
    fi
    if ! kill -0 "$running" 2>/dev/null; then
        tail -n 20 "$LOG" >&2
        die "dockerd exited during start-up (last log lines above, full log $LOG)."
    fi
    sleep 1
done
tail -n 20 "$LOG" >&2
die "dockerd (pid $running) did not answer 'docker info' within $WAIT s; see $LOG."
