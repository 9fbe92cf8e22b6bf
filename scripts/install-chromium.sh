#!/bin/sh
# Install Debian's Chromium and ChromeDriver, which the dashboard's browser tests
# (tests/e2e/test_dashboard_browser.py) and scripts/dashboard-screenshot.py drive headless
# through Selenium. Idempotent and quiet: does nothing when both binaries are there.
set -eu

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive

as_root() {  # sudo drops the environment: pass DEBIAN_FRONTEND on explicitly
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo env DEBIAN_FRONTEND=noninteractive "$@"; fi
}

as_root apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 || {
    as_root apt-get update -qq >/dev/null
    as_root apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
}

command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || {
    echo "install-chromium.sh: installed chromium and chromium-driver but chromium or" \
        "chromedriver is not on PATH" >&2
    exit 1
}
