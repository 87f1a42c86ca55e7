# prefect-db-exporter: the exporter alone, no Prefect, no test tools.
#
#   docker build -t prefect-db-exporter:0.1.0 .
#   docker run --rm -p 9650:9650 -v "$PWD/exporter.yaml:/etc/prefect-db-exporter/exporter.yaml:ro" \
#       prefect-db-exporter:0.1.0 --config /etc/prefect-db-exporter/exporter.yaml
#
# Give the database password through a file (password_file: in the config, e.g. a Docker or
# Kubernetes secret, readable by uid 10001) or an environment variable (password_env:); nothing
# secret is baked in here.
#
# Reproducible: the run-time dependencies come from requirements.lock (exact versions with hashes,
# `make lock` writes it from pyproject.toml), installed by a pinned uv into a virtualenv that the
# final stage copies; the build stage's tools (pip, uv) do not reach the final image.
FROM python:3.11.11-slim-bookworm AS build

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1

WORKDIR /opt/prefect-db-exporter
COPY requirements.lock pyproject.toml README.md ./
COPY exporter/ exporter/
COPY queries/ queries/

# uv (pinned, from PyPI) goes into a virtualenv of its own that stays in this stage. The exporter's
# virtualenv is made by uv, so it holds no pip or setuptools: the lock first (hashes required), then
# the package alone (--no-deps, so nothing outside the lock comes in). A plain (non-editable)
# install: the wheel carries queries/ as exporter/queries, and the check fails the build if the
# collectors ever go missing from it.
ENV UV_PYTHON_DOWNLOADS=never
RUN python -m venv /opt/uv \
    && /opt/uv/bin/pip install -q uv==0.13.9 \
    && /opt/uv/bin/uv venv -q --python python /opt/venv \
    && /opt/uv/bin/uv pip sync -q --python /opt/venv/bin/python --require-hashes requirements.lock \
    && /opt/uv/bin/uv pip install -q --python /opt/venv/bin/python --no-deps . \
    && cd / && /opt/venv/bin/python -c "from exporter.config import DEFAULT_QUERY_DIR as d; assert (d / 'operations.yaml').is_file(), d"

FROM python:3.11.11-slim-bookworm

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="prefect-db-exporter" \
      org.opencontainers.image.description="Prometheus exporter for the PostgreSQL database behind a self-hosted Prefect Server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.11-slim-bookworm"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

COPY --from=build /opt/venv /opt/venv
RUN groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin exporter

# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 9650

# /healthz answers while the process lives, whatever the database does (/readyz is for that).
# python's urllib because the slim image has neither curl nor wget. The port is the default
# listen port: change it here too if you change the listen address.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9650/healthz', timeout=4).status != 200)"]

ENTRYPOINT ["prefect-db-exporter"]
