#!/usr/bin/env bash
# Install the Debian packages that `make images` and the real-node test tier need, when missing:
# buildah/podman (image builds), debootstrap (the base image), containerd + runc (the node's runtime),
# the CNI plugins (its pod network), iptables (kube-proxy) and catatonit (its pause image).
# Needs root; does nothing when everything is installed (one dpkg-query).
set -euo pipefail

packages=(buildah podman debootstrap runc uidmap fuse-overlayfs containerd containernetworking-plugins
    iptables catatonit)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
if [[ $EUID -ne 0 ]]; then
    echo "install-node-packages: ${missing[*]} missing; install them as root (apt-get install)" >&2
    exit 1
fi
echo "install-node-packages: installing ${missing[*]}" >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
