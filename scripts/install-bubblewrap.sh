#!/bin/sh
# Install bubblewrap (bwrap), which the local backend uses to isolate every command it runs
# (sandbox/_isolation.py). Idempotent and quiet: does nothing when bwrap is already there.
# Without root or sudo it prints what to run and exits 0: `tvcache doctor` then says isolation
# is unavailable and `tvcache serve` refuses the local backend.
set -eu
exec sh "$(dirname "$0")/install-debian-package.sh" bubblewrap bwrap
