#!/usr/bin/env bash
# Install Debian's chromium, the headless browser the console test drives through Playwright
# (tests/runtime/test_console_browser.py launches it with executable_path; no browser is downloaded).
# Does nothing when it is installed (one dpkg-query). Prints the browser's path on the last line of stdout.
set -euo pipefail

if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed"; then
    if [[ $EUID -ne 0 ]]; then
        echo "install-browser: chromium missing; install it as root (apt-get install chromium)" >&2
        exit 1
    fi
    echo "install-browser: installing chromium" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
fi
command -v chromium
