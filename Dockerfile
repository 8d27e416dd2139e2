# syntax=docker/dockerfile:1.7
# One image for the five services, the migration and topic jobs, and the local stand-ins:
#   docker build -t apev:dev .                          (SERVICE only sets the default command)
#   docker build --build-arg SERVICE=jobs -t apev-jobs:dev .
#   docker run apev:dev jobs | migrate | topics | workspace | mcp | sinks | python -m apev_runtime dlq list ...
# Tests: deploy/tests/test_dockerfile.py (non-root, frozen lock, one image).
ARG PYTHON_VERSION=3.11
ARG UV_VERSION=0.13.9

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---------------------------------------------------------------- build: the locked environment
FROM python:${PYTHON_VERSION}-slim-bookworm AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Third-party dependencies first (their layer survives source edits): the lock and every member's pyproject.
COPY pyproject.toml uv.lock ./
COPY contracts/pyproject.toml contracts/
COPY runtime/pyproject.toml runtime/
COPY deploy/pyproject.toml deploy/
COPY deploy/databricks/pyproject.toml deploy/databricks/
COPY services/ingest/pyproject.toml services/ingest/
COPY services/jobs/pyproject.toml services/jobs/
COPY services/serving/pyproject.toml services/serving/
COPY services/writeback/pyproject.toml services/writeback/
COPY services/monitor/pyproject.toml services/monitor/
COPY emulators/workspace/pyproject.toml emulators/workspace/
COPY emulators/mcp/pyproject.toml emulators/mcp/
COPY emulators/sinks/pyproject.toml emulators/sinks/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace
# Then our packages, installed (not editable) so the runtime stage needs only the environment.
COPY contracts contracts
COPY runtime runtime
COPY deploy/apev_stack deploy/apev_stack
COPY deploy/databricks deploy/databricks
COPY services services
COPY emulators emulators
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# ---------------------------------------------------------------- runtime: no uv, no sources, not root
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG SERVICE=ingest
LABEL org.opencontainers.image.title="apev" \
      org.opencontainers.image.description="AgentProvision event layer: ingest, jobs, serving, writeback, monitor"
RUN groupadd --system --gid 10001 apev \
 && useradd --system --uid 10001 --gid apev --home-dir /app --no-create-home --shell /usr/sbin/nologin apev \
 && mkdir -p /app/data && chown apev:apev /app/data
COPY --from=build /app/.venv /app/.venv
COPY deploy/tenants.yaml /app/deploy/tenants.yaml
COPY deploy/container/entrypoint.sh /usr/local/bin/apev-entrypoint
WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SERVICE=${SERVICE} \
    PORT=8080 \
    APEV_STATE_DIR=/app/data
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=3)" || exit 1
ENTRYPOINT ["apev-entrypoint"]
CMD []
