.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN := $(PY) -m loaders
# dbt always runs with the effective connection (embedded or configured), like the loaders.
DBT := $(RUN) env -- $(VENV)/bin/dbt
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)

SCALE ?= 50000
SEED ?= 42
SELECT ?=
TEST_DATABASE ?= telemed_test
select_flag = $(if $(SELECT),--select $(SELECT),)

.PHONY: help setup up down status db generate load build freshness monitor dashboards docs docs-serve \
	bench lint format test pytest dbt-test demo clean lock _test

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.10+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 10) else None'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@

profiles.yml: profiles.yml.example
	@test -f $@ || { cp $< $@ && echo "created profiles.yml from profiles.yml.example"; }

setup: $(STAMP) profiles.yml ## create .venv with the pinned dependencies and profiles.yml

lock: ## re-pin requirements.txt from pyproject.toml (needs the network)
	rm -rf .local/lockenv && $(PYTHON) -m venv .local/lockenv
	.local/lockenv/bin/pip install --quiet -e '.[dev]'
	{ echo "# Fully pinned (lock). Direct dependencies are listed in pyproject.toml; regenerate with"; \
	  echo "# \`make lock\` after changing them."; \
	  .local/lockenv/bin/pip freeze --exclude-editable | grep -v '^pip=='; } > requirements.txt

up: setup ## start the embedded Postgres and broker (skipped for configured ones)
	$(RUN) services up
	$(RUN) db init

down: setup ## stop the embedded services (Postgres data is kept under .local/)
	$(RUN) services down

status: setup ## say what runs where
	$(RUN) services status

db: setup ## create database, roles, schemas and raw tables (idempotent)
	$(RUN) db init

generate: up ## synthetic source data (SCALE=appointments, SEED=n)
	$(RUN) generate --scale $(SCALE) --seed $(SEED)

load: up ## every loader once, draining what is there
	$(RUN) load

build: setup ## dbt build: seeds, snapshots, models, tests (SELECT=...)
	$(DBT) build $(select_flag)

freshness: setup ## dbt source freshness
	$(DBT) source freshness

monitor: setup ## freshness and tests as monitors, results stored, alerts sent where configured
	$(RUN) monitor

dashboards: setup ## offline HTML dashboards; Metabase provisioning when METABASE_URL is set
	$(PY) -m dashboards

docs: setup ## dbt docs generate
	$(DBT) docs generate

docs-serve: docs ## dbt docs serve
	$(DBT) docs serve --host 127.0.0.1 --port $${DOCS_PORT:-8080}

bench: up ## benchmarks, as ratios against references measured in the same run
	$(PY) -m benchmarks $(BENCH_ARGS)

lint: setup ## ruff and sqlfluff (dbt templater); MODEL=path limits sqlfluff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(DBT) deps --quiet >/dev/null 2>&1 || true
	$(RUN) env -- $(VENV)/bin/sqlfluff lint $(if $(MODEL),$(MODEL),models tests analyses snapshots) --disable-progress-bar

format: setup ## apply ruff format and sqlfluff fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
	$(RUN) env -- $(VENV)/bin/sqlfluff fix $(if $(MODEL),$(MODEL),models tests analyses snapshots) --disable-progress-bar

test: setup ## every check on an isolated database: lint, pytest, dbt build with all tests
	$(RUN) services run -- env PGDATABASE=$(TEST_DATABASE) $(MAKE) --no-print-directory _test

_test:
	$(RUN) db drop --database $(PGDATABASE)
	$(RUN) db init
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory pytest
	$(MAKE) --no-print-directory dbt-test

pytest: setup ## the Python tests (unit and integration on the real Postgres and broker)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

dbt-test: setup
	$(DBT) seed --full-refresh
	$(DBT) build --full-refresh

demo: ## from a fresh clone: services, data, load, dbt build, freshness, summary
	$(MAKE) --no-print-directory up
	$(DBT) build
	$(DBT) source freshness
	@echo "demo done. Services keep running for exploration: 'make status', 'make down' to stop."

clean: ## remove build output (keeps .local data and .venv)
	rm -rf target dbt_packages logs
