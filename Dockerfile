# One image for the bridge and the streams app (docker-compose.yml runs it with different commands).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge bridge
COPY streams streams
COPY devstack devstack
COPY demo demo
COPY sql sql
COPY schemas schemas
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1
CMD ["python", "-m", "streams", "worker"]
