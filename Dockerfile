# prefect-db-exporter: the exporter alone, no Prefect, no test tools.
#
#   docker build -t prefect-db-exporter .
#   docker run --rm -p 9650:9650 -v "$PWD/exporter.yaml:/etc/prefect-db-exporter/exporter.yaml:ro" \
#       prefect-db-exporter --config /etc/prefect-db-exporter/exporter.yaml
#
# Give the database password through a file (password_file: in the config, e.g. a Docker or
# Kubernetes secret) or an environment variable (password_env:); nothing secret is baked in here.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/prefect-db-exporter
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
COPY queries/ queries/

# A plain (non-editable) install: the wheel carries queries/ as exporter/queries, and the check
# fails the build if the collectors ever go missing from it. The source is removed afterwards so
# that only the installed package can be what runs.
# Only the four run-time dependencies come in: no extras, no Prefect, no test tools.
RUN pip install . \
    && cd / && rm -rf /opt/prefect-db-exporter/* \
    && python -c "from exporter.config import DEFAULT_QUERY_DIR as d; assert (d / 'operations.yaml').is_file(), d" \
    && groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin exporter

# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 9650

# /healthz answers while the process lives, whatever the database does (/readyz is for that).
# python's urllib because the slim image has neither curl nor wget. The port is the default
# listen port: change it here too if you change listen:.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9650/healthz', timeout=4).status != 200)"]

ENTRYPOINT ["prefect-db-exporter"]
