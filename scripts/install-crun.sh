#!/bin/sh
# Install crun, the OCI runtime (C: no Go runtime to start) that fs sandboxes of the Docker
# backend start through when it is installed (sandbox/_runc.py; runc is the fallback).
# Idempotent and quiet; without root it says what to run and exits 0 (`tvcache doctor` then
# names runc as the OCI runtime in use).
set -eu
exec sh "$(dirname "$0")/install-debian-package.sh" crun crun
