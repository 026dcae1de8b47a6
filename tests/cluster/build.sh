#!/usr/bin/env bash
# Build one binary of the local cluster once per machine and print its path on
# the last line of stdout:
#   build.sh [testcluster]  etcd + kube-apiserver + kube-controller-manager + kube-scheduler
#   build.sh kubelet        the upstream kubelet (k8s.io/kubernetes/cmd/kubelet)
#   build.sh kube-proxy     the upstream kube-proxy (k8s.io/kubernetes/cmd/kube-proxy)
# The last two are `tool` lines of go.mod: the same module graph, hence the
# same Kubernetes version, as the control plane.
#
# The binary is cached outside the repository under
#   ${DA_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/durable-agents}/<name>-<hash>
# where <hash> covers go.mod, go.sum, the Go sources (testcluster only), this
# script and the Go version, so an unchanged tree reuses the binary instantly.
# A cold build compiles most of Kubernetes (about 7 minutes on 2 cores for
# testcluster, a few more for the kubelet and kube-proxy, which share most
# packages); later builds reuse the normal Go module and build caches
# (GOMODCACHE, GOCACHE), so they are much faster.
#
# Progress goes to stderr; only the binary path goes to stdout.
set -euo pipefail

src_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_dir="${DA_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/durable-agents}"

if command -v go >/dev/null 2>&1; then
    go_bin="$(command -v go)"
elif [[ -x /usr/local/go/bin/go ]]; then
    go_bin=/usr/local/go/bin/go
else
    echo "build.sh: no Go toolchain found (need Go >= 1.26 on PATH or at /usr/local/go/bin/go)" >&2
    exit 1
fi

cd "$src_dir"
name="${1:-testcluster}"
case "$name" in
    testcluster) package=. ; sources="$(ls ./*.go | LC_ALL=C sort)" ;;
    kubelet | kube-proxy) package="k8s.io/kubernetes/cmd/$name" ; sources="" ;;
    *) echo "build.sh: unknown binary '$name' (testcluster, kubelet or kube-proxy)" >&2; exit 2 ;;
esac
hash="$(
    {
        "$go_bin" version
        echo "$name"
        for f in build.sh go.mod go.sum $sources; do
            echo "== $f"
            cat "$f"
        done
    } | sha256sum | cut -c1-16
)"
binary="$cache_dir/$name-$hash"

if [[ -x "$binary" ]]; then
    echo "build.sh: reusing $binary" >&2
    touch "$binary"  # marks it as recently used for the clean-up below
    echo "$binary"
    exit 0
fi

mkdir -p "$cache_dir"
# Serialise concurrent builds (e.g. parallel test sessions): the second one
# waits and then finds the finished binary.
exec 9>"$cache_dir/.$name.lock"
flock 9
if [[ ! -x "$binary" ]]; then
    echo "build.sh: building $binary (a cold build takes a long time)" >&2
    start=$(date +%s)
    tmp="$binary.tmp.$$"
    trap 'rm -f "$tmp"' EXIT
    # Stamp the Kubernetes version the way the upstream build does, otherwise
    # the apiserver reports v0.0.0-master and version checks (kubectl skew,
    # Helm kubeVersion constraints) misbehave.
    k8s_version="$(awk '$1 == "k8s.io/kubernetes" { print $2 }' go.mod)"
    major="${k8s_version#v}"; major="${major%%.*}"
    minor="${k8s_version#v*.}"; minor="${minor%%.*}"
    ldflags=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean"
    done
    # -trimpath and stripped symbols keep the binary smaller and independent
    # of the checkout path; the binary is only ever run, never debugged.
    "$go_bin" build -trimpath -ldflags="-s -w$ldflags" -o "$tmp" "$package"
    mv "$tmp" "$binary"
    trap - EXIT
    echo "build.sh: built in $(( $(date +%s) - start ))s" >&2
    # Builds unused for a week are dead weight (each is ~120 MB). Recent ones
    # may belong to another checkout or a running test session, so they stay.
    find "$cache_dir" -maxdepth 1 -name "$name-*" ! -name "$name-$hash" -type f -mtime +7 -delete
fi
echo "$binary"
