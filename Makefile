# Two commands do all the set-up (see README.md):
#   make demo   create the environment, start an embedded Temporal dev server, run examples/hello.yaml
#   make test   create the environment and run every test tier, the real-cluster tiers included
#   make images build the runtime and operator images without Docker Hub (scripts/build-images.sh)
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROMPT ?= What is the weather like in Paris, and what time is it there?

.PHONY: demo test lint typecheck env crds tools host-tools go-tools images images-after-host-tools

$(BIN)/durable-agents: pyproject.toml uv.lock
	@$(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install --quiet --disable-pip-version-check "uv>=0.9"
	$(PY) -m uv sync --frozen --extra dev --python $(PY)
	@touch $@

env: $(BIN)/durable-agents

demo: env
	$(BIN)/durable-agents dev examples/hello.yaml --prompt "$(PROMPT)"

lint: env
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: env
	$(BIN)/pyright

crds: env
	$(BIN)/durable-agents crds --write

# Built once per machine, then reused: helm, the control plane, the node's kubelet and kube-proxy; nginx
# (the TLS terminator of the connection tests); Phoenix (the trace backend of the trace
# tests); chromium (the console test).
# `host-tools` are packages and small downloads; `go-tools` are the slow Go builds.
tools: host-tools go-tools

host-tools: env
	bash scripts/install-helm.sh >/dev/null
	bash scripts/install-kube-score.sh >/dev/null
	bash scripts/install-node-packages.sh
	bash scripts/install-tls-proxy.sh
	bash scripts/install-trace-backend.sh >/dev/null
	bash scripts/install-browser.sh >/dev/null

go-tools:
	bash tests/cluster/build.sh >/dev/null
	bash tests/cluster/build.sh kubelet >/dev/null
	bash tests/cluster/build.sh kube-proxy >/dev/null

images:
	bash scripts/build-images.sh

# The images need the node packages (buildah) but not the Go builds: on a new machine both run side by
# side, which hides most of the image build behind the control plane's compile.
images-after-host-tools: host-tools
	bash scripts/build-images.sh

test: env lint typecheck
	$(MAKE) --no-print-directory -j2 go-tools images-after-host-tools
	$(BIN)/python -m pytest tests
