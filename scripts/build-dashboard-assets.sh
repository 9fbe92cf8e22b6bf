#!/bin/sh
# Rebuild the dashboard's vendored front-end library (uPlot, MIT) from the npm registry into
# tvcache/service/static/vendor/. The built files are committed, so `make setup` needs only
# Python; run this only to upgrade (bump UPLOT_VERSION, run, commit). Needs node and npm.
set -eu

UPLOT_VERSION="${UPLOT_VERSION:-1.6.32}"
here="$(cd "$(dirname "$0")/.." && pwd)"
out="$here/tvcache/service/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

command -v npm >/dev/null 2>&1 || {
    echo "build-dashboard-assets.sh: npm not found; install Node.js and npm" >&2
    exit 1
}
cd "$work"
npm init -y >/dev/null
npm install --silent --no-audit --no-fund "uplot@$UPLOT_VERSION" >/dev/null
mkdir -p "$out"
cp node_modules/uplot/dist/uPlot.iife.min.js "$out/uPlot.iife.min.js"
cp node_modules/uplot/dist/uPlot.min.css "$out/uPlot.min.css"
cp node_modules/uplot/LICENSE "$out/uPlot.LICENSE"
echo "uplot@$UPLOT_VERSION" > "$out/VERSIONS"
