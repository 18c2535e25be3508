# Celery stream monitor — every target installs what it needs (venv, Tansu, ClickHouse, brokers).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
RUN_DIR ?= $(CURDIR)/.run
export RUN_DIR
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup browser faketime docker image wheel up down status logs test unit integration demo ui bench bench-engine bench-bridge bench-streams bench-sink bench-e2e bench-ui bench-ops bench-storage chaos clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
	  || { echo "Python 3.11 is required (found $(PYTHON)); set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

/usr/sbin/clickhouse-server:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq clickhouse-server clickhouse-client

# The web UI's browser libraries (htmx, Chart.js), pinned by streams/ui/package-lock.json, from npm
# into streams/ui/node_modules (git-ignored); the UI serves them itself, no CDN at run time.
UI_ASSETS := streams/ui/node_modules/.package-lock.json
$(UI_ASSETS): streams/ui/package.json streams/ui/package-lock.json
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq npm; }
	cd streams/ui && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Debian's chromium and its driver, for the UI's browser tests (selenium drives them headless).
/usr/bin/chromedriver:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver

setup: $(VENV)/.installed /usr/sbin/clickhouse-server $(UI_ASSETS)  ## venv + Python deps (incl. Tansu) + Debian ClickHouse + the UI's npm assets
	@echo "setup done: $(PY), $$(command -v clickhouse-server)"

browser: /usr/bin/chromedriver  ## Debian's chromium + chromium-driver (the UI's browser tests)

# Debian's faketime: the clock-skew test runs a real Celery worker whose clock is behind.
/usr/bin/faketime:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq faketime

faketime: /usr/bin/faketime  ## Debian's faketime (the clock-skew integration test)

# Debian's Docker engine and tools: the image test runs our own dockerd (no bridge network, host
# networking only), debootstrap builds its base images, docker-compose validates docker-compose.yml.
/usr/sbin/debootstrap /usr/bin/docker-compose:
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq docker.io debootstrap docker-compose

docker: /usr/sbin/debootstrap /usr/bin/docker-compose  ## Debian's docker.io, debootstrap, docker-compose (the image and its test)

image: setup docker  ## build the container image celery-stream-monitor:local (a dockerd of our own unless DOCKER_HOST is set)
	$(PY) -m devstack image

wheel: $(VENV)/.installed $(UI_ASSETS)  ## build the wheel into dist/ (with the schema, the queries and the UI's assets)
	$(PY) -m build --wheel --no-isolation --outdir dist .

up: setup  ## start Tansu, ClickHouse (and RabbitMQ/Redis if absent), create topics, apply schema
	$(PY) -m devstack up

down:  ## stop what `make up` started (never services it did not start)
	@[ -x $(PY) ] && $(PY) -m devstack down || true

status:  ## show each service, its port and whether we own it
	@$(PY) -m devstack status

logs:  ## tail the logs of the services we run
	@$(PY) -m devstack logs

unit: setup docker  ## unit tests only (no servers; docker-compose validates the compose file)
	$(PY) -m pytest tests/unit -q

integration: setup browser faketime docker  ## integration tests (real Tansu, ClickHouse, RabbitMQ/Redis, Celery worker)
	$(PY) -m pytest tests/integration -q

# One process for now: on two pytest-xdist workers (a file per worker; each stack with its own event
# exchange) the suite took 11.7-14.6 min, but a run of this stop's final code lost a bridge's raw
# publishes in test_dead_letters (0 messages received) -- not explained yet (docs/development.md).
test: setup browser faketime docker  ## all tests: unit + integration (isolated stacks on free ports)
	$(PY) -m pytest tests -q --durations=25

demo: setup  ## the whole pipeline end to end with a real Celery worker and the web UI, then a report (KEEP=1: keep it running)
	$(PY) -m demo $(if $(KEEP),--keep-running)

ui: setup  ## the web UI on the stack's ClickHouse (UI_HOST/UI_PORT, default http://127.0.0.1:9466/)
	$(PY) -m streams ui

bench-engine: setup  ## engine vs celery.events.state.State on >= 200k recorded events
	$(PY) -m bench.engine

bench-bridge: setup  ## events/s RabbitMQ -> bridge -> Kafka (private Tansu), bridge CPU and RSS
	$(PY) -m bench.bridge

bench-streams: setup  ## one streams worker catching up on 200k events vs a naive agent and Faust's own ceiling
	$(PY) -m bench.streams

bench-sink: setup  ## rows/s Kafka -> ClickHouse (1M events + their task records) and report query latency
	$(PY) -m bench.sink

bench-e2e: setup  ## the whole pipeline at increasing rates (live Celery worker + replay): sustained events/s, latency p50/p95/p99, CPU/RSS per component, JSON + PNG
	$(PY) -m bench.e2e

bench-ui: setup  ## the web UI's server time per page (p50/p95) on 1M events / 250k tasks
	$(PY) -m bench.ui

bench-ops: setup  ## queue-length sampling cost (RabbitMQ, Redis; depths read back exactly) and the celery-exporter metrics' cost per event
	$(PY) -m bench.ops

chaos: setup  ## faults under a real Celery workload (kill -9 bridge x3 and streams, ClickHouse down 30s, Kafka paused 20s, Kafka kill -9 + restart on durable storage): events lost, duplicates absorbed
	$(PY) -m demo.chaos --plan full

bench-storage: setup  ## Tansu's durable s3 storage (moto) against memory storage: pre-load, worker catch-up, restart after kill -9
	$(PY) -m bench.storage

bench: bench-engine bench-bridge bench-streams bench-sink bench-e2e bench-ui bench-ops bench-storage  ## every benchmark (per stage, then end to end)

clean: down  ## stop our services and delete the run directory and venv
	rm -rf $(RUN_DIR) $(VENV)
