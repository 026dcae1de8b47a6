#!/usr/bin/env bash
# Install Debian's nginx (with its gRPC proxy module), the TLS terminator the connection tests put in
# front of the Temporal dev server (tests/tls_proxy.py). Does nothing when it is installed (one dpkg-query).
set -euo pipefail

dpkg-query -W -f='${Status}' nginx-light 2>/dev/null | grep -q "install ok installed" && exit 0
command -v nginx >/dev/null && exit 0
if [[ $EUID -ne 0 ]]; then
    echo "install-tls-proxy: nginx missing; install it as root (apt-get install nginx-light)" >&2
    exit 1
fi
echo "install-tls-proxy: installing nginx-light" >&2
apt-get update -qq >&2
# The package's post-install tries to start the system service; no init system here, so it does not.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >&2
