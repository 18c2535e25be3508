# syntax: Dockerfile 1.x (works with the classic builder and BuildKit)
# One image for every process of the pipeline: `celery-monitor bridge | worker | sink | ui | migrate |
# topics | check | report ...` (docker-compose.yml runs it with different commands).
#
#   docker build -t celery-stream-monitor:local .          # or: make image
#
# BASE_IMAGE: any Debian-based image with python3.11 and its venv module (default: the official
# python image); NODE_IMAGE: any image with npm, for the UI's two browser libraries (pinned by
# streams/ui/package-lock.json). Nothing here downloads at run time.
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# -- the UI's browser libraries, from npm ------------------------------------------------------
FROM ${NODE_IMAGE} AS ui-assets
WORKDIR /ui
COPY streams/ui/package.json streams/ui/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

# -- the package and its dependencies in a virtualenv (rocksdb extra: STREAMS_STORE=rocksdb://) --
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/celery-monitor
COPY pyproject.toml README.md /src/
COPY bridge /src/bridge
COPY streams /src/streams
COPY sql /src/sql
COPY schemas /src/schemas
COPY --from=ui-assets /ui/node_modules /src/streams/ui/node_modules
RUN /opt/celery-monitor/bin/pip install "/src[rocksdb]" \
 && /opt/celery-monitor/bin/python -c "from streams.resources import migrations_dir, schemas_dir; from streams.ui.app import missing_assets; assert not missing_assets(), missing_assets(); migrations_dir(); schemas_dir()"

# -- runtime: the virtualenv, a user of its own, a data volume ----------------------------------
FROM ${BASE_IMAGE}
RUN (getent group celery-monitor || groupadd --system --gid 10001 celery-monitor) \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/celery-monitor --no-create-home --shell /usr/sbin/nologin celery-monitor \
 && mkdir -p /var/lib/celery-monitor && chown 10001:10001 /var/lib/celery-monitor
COPY --from=build /opt/celery-monitor /opt/celery-monitor
ENV PATH=/opt/celery-monitor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STREAMS_DATA_DIR=/var/lib/celery-monitor \
    BRIDGE_METRICS_ADDR=0.0.0.0:9464 \
    STREAMS_METRICS_ADDR=0.0.0.0:9465 \
    SINK_METRICS_ADDR=0.0.0.0:9467 \
    UI_HOST=0.0.0.0
# A container's endpoints are reached from outside it: metrics and health on every interface of
# the container (publish them as you need); the UI beyond loopback refuses to start without
# UI_BASIC_AUTH or UI_TOKEN.
EXPOSE 9464 9465 9466 9467
VOLUME ["/var/lib/celery-monitor"]
WORKDIR /var/lib/celery-monitor
USER 10001:10001
# The /healthz of whichever process this container runs (bridge, worker, sink or ui).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["celery-monitor", "health"]
ENTRYPOINT ["celery-monitor"]
CMD ["--help"]
