#!/usr/bin/env bash
# Build the project's images (images/*.Dockerfile) on this machine, without Docker Hub:
#
#   scripts/build-images.sh            # `make images`
#
# 1. A Python base image made of Debian packages (debootstrap), tagged
#    localhost/durable-agents/python:3.11-bookworm-<recipe hash>; built once per machine and reused
#    while this script is unchanged.
# 2. images/runtime.Dockerfile and images/operator.Dockerfile built with buildah on that base
#    (PYTHON_IMAGE build argument; a normal `docker build` uses the official Python image instead),
#    tagged ${DA_IMAGE_PREFIX:-localhost/durable-agents}/{runtime,operator}:${DA_IMAGE_TAG:-dev}.
#    buildah's layer cache makes an unchanged rebuild take seconds.
#
# DA_IMAGE_PREFIX=registry.example.com/durable-agents DA_IMAGE_TAG=0.1.0 names them for a registry.
#
# Needs root and Debian's buildah, podman, debootstrap and runc (installed here when missing). The last
# lines of stdout are the two image names; progress goes to stderr. Push to a registry with e.g.
#   podman push localhost/durable-agents/runtime:dev registry.example.com/durable-agents/runtime:0.1.0
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${DA_IMAGE_PREFIX:-localhost/durable-agents}"
tag="${DA_IMAGE_TAG:-dev}"
suite=bookworm
log() { echo "build-images: $*" >&2; }

if [[ $EUID -ne 0 ]]; then
    log "needs root (debootstrap and buildah's rootful storage); run it with sudo"
    exit 1
fi

bash "$repo/scripts/install-node-packages.sh"

# This machine kind: hybrid cgroups (crun refuses them, runc works) and no CAP_SYS_RESOURCE, so RUN
# steps must not ask for rlimits above what the shell has.
conf_dir="$(mktemp -d)"
rootfs=""
cleanup() {
    # An interrupted debootstrap leaves /proc and /sys mounted in its target.
    if [[ -n "$rootfs" ]]; then
        grep -o " $rootfs/[^ ]*" /proc/self/mountinfo | sort -r | xargs -r umount -l 2>/dev/null || true
        rm -rf --one-file-system "$rootfs"
    fi
    rm -rf "$conf_dir"
}
trap cleanup EXIT
cat >"$conf_dir/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$conf_dir/containers.conf"

# The base: Debian's python3 (3.11 on bookworm) in a minimal rootfs, imported as image "$1".
build_base() {
    local image="$1" mirror
    mirror="$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
    [[ -n "$mirror" ]] || mirror="$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)"
    [[ -n "$mirror" ]] || { log "no Debian mirror found in /etc/apt/sources.list*"; return 1; }
    rootfs="$(mktemp -d /var/tmp/durable-agents-rootfs.XXXXXX)"
    log "debootstrap $suite from $mirror into $rootfs (about 2 minutes)"
    if ! debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
        "$suite" "$rootfs" "$mirror" >&2; then
        return 1
    fi
    # Image builds reach PyPI through whatever TLS interception the host trusts: give the image the
    # host's CA bundle (a superset of Debian's on a plain machine).
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    # Debian marks its python as externally managed; the Dockerfiles pip-install uv into it.
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    # What no container needs: package lists and caches, documentation, locales.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" -c . | podman import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["python3"]' - "$image" >&2
    rm -rf "$rootfs"
    rootfs=""
}

# The recipe above names the image: a change to it builds a new base, anything else reuses it.
recipe_hash="$(declare -f build_base | sha256sum | cut -c1-12)"
base="localhost/durable-agents/python:3.11-$suite-$recipe_hash"
if podman image exists "$base"; then
    log "reusing base image $base"
else
    start=$(date +%s)
    build_base "$base"
    log "base image $base built in $(($(date +%s) - start))s"
fi

built=()
for image in runtime operator; do
    start=$(date +%s)
    name="$prefix/$image:$tag"
    log "building $name"
    # Host network for RUN steps: no bridge, firewall chains or forwarding sysctl left on the host.
    buildah bud --layers --runtime /usr/sbin/runc --network host --quiet \
        --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 \
        -f "$repo/images/$image.Dockerfile" --ignorefile "$repo/images/$image.Dockerfile.dockerignore" \
        --build-arg "PYTHON_IMAGE=$base" -t "$name" "$repo" >&2
    size="$(podman image inspect --format '{{.Size}}' "$name")"
    log "$name: $((size / 1000000)) MB, built in $(($(date +%s) - start))s"
    built+=("$name")
done
printf '%s\n' "${built[@]}"
