#!/usr/bin/env bash
# Install the trace backend the trace tests export spans to (tests/trace_backend.py): Arize Phoenix from
# PyPI, an OTLP/HTTP receiver and span store with a REST API, in a venv of its own (its ~140 packages must
# not meet the project's), at the versions pinned in scripts/trace-backend-requirements.txt:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/durable-agents/trace-backend-<hash of the pins>/venv
# A venv already built for the same pins is reused at once; changing a pin builds a new one.
#
# Bytecode is compiled at install: a cold `phoenix serve` would otherwise compile ~14,000 modules each start
# (20 CPU-s) where writing bytecode is turned off.
#
# Progress goes to stderr; only the path of the `phoenix` executable goes to stdout. With `--installed`,
# install nothing: print the path if the venv is there, else exit 1 (what the tests call).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
requirements="$here/trace-backend-requirements.txt"
python="${TRACE_BACKEND_PYTHON:-python3.11}"
pins_hash="$(sha256sum "$requirements" | cut -c1-12)"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/durable-agents/trace-backend-$pins_hash"
phoenix="$cache_dir/venv/bin/phoenix"

if [[ -x "$phoenix" && -e "$cache_dir/.complete" ]]; then
    echo "$phoenix"
    exit 0
fi
if [[ "${1:-}" == "--installed" ]]; then
    echo "install-trace-backend.sh: the trace backend is not installed: run \`make tools\`" >&2
    echo "  (or bash scripts/install-trace-backend.sh)" >&2
    exit 1
fi

mkdir -p "$cache_dir"
# Serialise concurrent installs: the second waits, then finds the venv.
exec 9>"$cache_dir/.lock"
flock 9
if [[ ! -e "$cache_dir/.complete" ]]; then
    if ! "$python" -m uv --version >/dev/null 2>&1; then
        "$python" -m pip install --quiet --disable-pip-version-check "uv>=0.9" >&2
    fi
    echo "install-trace-backend.sh: installing Arize Phoenix into $cache_dir/venv (once per pin set)" >&2
    rm -rf "$cache_dir/venv"
    "$python" -m uv venv --quiet --python "$python" "$cache_dir/venv" >&2
    "$python" -m uv pip sync --quiet --compile-bytecode --python "$cache_dir/venv/bin/python" "$requirements" >&2
    touch "$cache_dir/.complete"
fi
echo "install-trace-backend.sh: $("$cache_dir/venv/bin/python" -c 'import phoenix; print("phoenix", phoenix.__version__)')" >&2
echo "$phoenix"
