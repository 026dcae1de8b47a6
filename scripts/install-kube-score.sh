#!/usr/bin/env bash
# Install kube-score (a peer Kubernetes manifest scanner) once per machine; print its path on the last line.
#
# Built with `go install github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION` from the Go module
# proxy (its go.mod has no replace directives) into a cache outside the repository:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/durable-agents/kube-score-$KUBE_SCORE_VERSION/kube-score
# Later runs reuse it at once. kube-linter is not served by the module proxy here, so kube-score it is.
#
# Progress goes to stderr; only the binary path goes to stdout.
set -euo pipefail

KUBE_SCORE_VERSION="${KUBE_SCORE_VERSION:-v1.20.0}"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/durable-agents/kube-score-$KUBE_SCORE_VERSION"
binary="$cache_dir/kube-score"

if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi

mkdir -p "$cache_dir"
# Serialise concurrent installs: the second waits, then finds the binary.
exec 9>"$cache_dir/.lock"
flock 9
if [[ ! -x "$binary" ]]; then
    go_bin="$(command -v go || echo /usr/local/go/bin/go)"
    if [[ ! -x "$go_bin" ]]; then
        echo "install-kube-score.sh: no Go toolchain (need go on PATH or /usr/local/go/bin/go)" >&2
        exit 1
    fi
    echo "install-kube-score.sh: building kube-score $KUBE_SCORE_VERSION (once per machine)" >&2
    GOBIN="$cache_dir/.bin.$$" GOFLAGS=-buildvcs=false "$go_bin" install \
        "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION" >&2
    mv "$cache_dir/.bin.$$/kube-score" "$binary"
    rmdir "$cache_dir/.bin.$$"
fi
echo "install-kube-score.sh: $("$binary" version 2>/dev/null | head -1)" >&2
echo "$binary"
