# One image for the bridge, the streams app and the web UI (docker-compose.yml runs it with different commands).
# The UI's browser libraries come from npm, pinned by streams/ui/package-lock.json.
FROM node:20-slim AS ui-assets
WORKDIR /ui
COPY streams/ui/package.json streams/ui/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge bridge
COPY streams streams
COPY --from=ui-assets /ui/node_modules streams/ui/node_modules
COPY devstack devstack
COPY demo demo
COPY sql sql
COPY schemas schemas
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1
CMD ["python", "-m", "streams", "worker"]
