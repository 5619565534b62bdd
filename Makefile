.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUN := $(PY) -m loaders
# dbt always runs with the effective connection (embedded or configured), like the loaders.
DBT := $(RUN) env --role telemed_dbt -- $(PY) -m runtime.dbt_cli
# The environments install with uv (PyPI's `uv`, pinned below; pip installs it into .venv first): on this
# machine the project's requirements took 74 s with pip and 3 s with uv, Airflow's about a minute and 3 s,
# with the same packages. INSTALLER=pip installs with pip alone, for example where only a pip.conf says
# which package index to use (uv reads its own settings: UV_DEFAULT_INDEX, UV_INDEX).
INSTALLER ?= uv
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
# pip and uv say only what failed: a fresh clone's install is not a screenful of notes about the machine's
# index configuration (make demo prints one line per step). PIP_QUIET=-q shows pip's warnings again.
PIP_QUIET ?= -qq
PIP := -m pip install $(PIP_QUIET) --disable-pip-version-check
# $(call install_requirements,PYTHON OF A VENV,REQUIREMENTS FILE[,ENVIRONMENT]): installs into that venv (with
# uv: the project's uv), each command run with the ENVIRONMENT's assignments.
# Both compile every module to bytecode as they install (pip does by default, uv when told): a process then
# loads dbt, Airflow and the loaders' libraries from .pyc files instead of compiling their source at every
# start, which it must where PYTHONDONTWRITEBYTECODE is set (as on the machine these figures are from): `import
# dbt.cli.main` took 2.6 s of CPU without them and 1.3 s with, Airflow and Cosmos 2.7 s and 1.2 s.
install_requirements = $(if $(filter pip,$(INSTALLER)),$(3) $(1) $(PIP) --upgrade pip && $(3) $(1) $(PIP) -r $(2),\
	$(3) $(UV) pip install --quiet --compile-bytecode --python $(1) -r $(2))
# A stamp per requirements file and way of installing: a change to either installs again.
INSTALL_WAY := $(INSTALLER)-bytecode
# $(call compile_old_venv,VENV): a venv made before the installs compiled to bytecode (a stamp not ending in
# -bytecode) is compiled once, since uv, having nothing to install, compiles nothing. A file that does not
# compile is one no process imports (compileall's exit status is not the install's).
compile_old_venv = if ls $(1)/.installed-* 2>/dev/null | grep -qv -- '-bytecode$$'; then \
	echo "compiling $(1) to bytecode (made before the installs did)"; \
	$(1)/bin/python -m compileall -q -j 0 "$$($(1)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
	> /dev/null || true; fi
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)-$(INSTALL_WAY)
# Apache Airflow's own environment (see the airflow targets).
AIRFLOW_VENV ?= .local/airflow/venv
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed-$(shell cksum < orchestration/requirements-airflow.txt | cut -d' ' -f1)-$(INSTALL_WAY)
# Neither Airflow nor Cosmos reports usage anywhere from here (the supervisor sets the same for its processes).
AIRFLOW_NO_TELEMETRY := AIRFLOW__COSMOS__ENABLE_TELEMETRY=False DO_NOT_TRACK=true SCARF_ANALYTICS=false \
	AIRFLOW__USAGE_DATA_COLLECTION__ENABLED=False

SCALE ?= 50000
SEED ?= 42
SELECT ?=
SELECTOR ?=
GENERATED ?= $(or $(TELEMED_STATE_DIR),.local)/generated
TEST_DATABASE ?= telemed_test
TEST_SCALE ?= 3000
# pytest-xdist workers, each with embedded services of its own (0: one process, the shared services). Four
# on two cores: several suites mostly wait on servers they kill or pause (docs/tests.md, Where the time goes).
PYTEST_WORKERS ?= 4
# Work units and their order are testkit/fixtures.py's (SHARED_WORLDS, FIRST).
XDIST = -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder
# Faked dates run at once by `make test-dates` (each with a Postgres of its own).
DATE_JOBS ?= 2
TEST_DATA := $(or $(TELEMED_STATE_DIR),.local)/test-data
TEST_TOPIC := telemed.test-events.$(shell od -An -N4 -tx4 /dev/urandom | tr -d ' ')
# The test worlds' business clock: the day after the generator's default period (2026-10-31). Every
# test process counts it as now for ages and data recency (dbt var as_of); see docs/tests.md.
TEST_AS_OF ?= 2026-11-01T00:00:00Z
CHROMIUM ?= $(or $(TELEMED_CHROMIUM),/usr/bin/chromium)
select_flag = $(if $(SELECT),--select $(SELECT),) $(if $(SELECTOR),--selector $(SELECTOR),)

# Numeric variables are checked when make reads this file, so a bad value stops it before anything starts.
# $(call whole_number,VARIABLE,PATTERN,WHAT IT MUST BE)
whole_number = $(if $(shell [[ '$(subst ','',$($(1)))' =~ ^$(2)$$ ]] && echo ok),,$(error $(1)=$($(1)) is not valid: \
	$(1) must be $(3)))
$(call whole_number,SCALE,[1-9][0-9]*,a positive whole number of appointments (e.g. SCALE=50000))
$(call whole_number,SEED,-?[0-9]+,a whole number (e.g. SEED=42))
$(call whole_number,TEST_SCALE,[1-9][0-9]*,a positive whole number of appointments (e.g. TEST_SCALE=3000))
$(call whole_number,PYTEST_WORKERS,[0-9]+,a whole number of pytest workers (0: no xdist))
$(call whole_number,DATE_JOBS,[1-9][0-9]*,a positive whole number of faked-date runs at once)
$(if $(filter uv pip,$(INSTALLER)),,$(error INSTALLER=$(INSTALLER) is not valid: INSTALLER must be uv or pip))

.PHONY: help setup deps up down status db generate load build freshness monitor dashboards chromium docs docs-serve \
	bench scale lint _lint format test pytest dbt-test demo clean lock _test test-lint insights faketime test-dates test-fast lint-python psql serve \
	retention erase airflow airflow-down airflow-venv airflow-manifest airflow-lock test-airflow

# `make help`: these first, in this order, then every other target in the order of this file.
EVERYDAY := demo status psql monitor dashboards docs-serve insights test-fast test down help

help: ## list the targets: the everyday ones first
	@if [ -t 1 ] && [ -z "$${NO_COLOR:-}" ]; then color=1; else color=; fi; \
	awk -v everyday="$(EVERYDAY)" -v color="$$color" 'BEGIN { FS = ":.*## "; n = split(everyday, first, " ") } \
		/^[a-zA-Z_-]+:.*## / { help[$$1] = $$2; order[++count] = $$1 } \
		function show(name) { if (color) printf "  \033[36m%-12s\033[0m %s\n", name, help[name]; \
			else printf "  %-12s %s\n", name, help[name] } \
		END { print "Everyday:"; for (i = 1; i <= n; i++) if (first[i] in help) { show(first[i]); shown[first[i]] = 1 } \
			print ""; print "Everything else:"; for (i = 1; i <= count; i++) if (!(order[i] in shown)) show(order[i]) }' \
		$(MAKEFILE_LIST)

$(STAMP): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.10+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 10) else None'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(filter pip,$(INSTALLER)),,$(PY) $(PIP) uv==$(UV_VERSION))
	$(call install_requirements,$(PY),requirements.txt)
	@$(call compile_old_venv,$(VENV))
	@rm -f $(VENV)/.installed-* && touch $@

# A profile from before dbt logged in as telemed_dbt (it logged in as the admin and used SET ROLE) no longer
# connects: it is kept as profiles.yml.bak and replaced.
profiles.yml: profiles.yml.example
	@test -f $@ || { cp $< $@ && echo "created profiles.yml from profiles.yml.example"; }
	@grep -q DBT_ENV_SECRET_TELEMED_DBT_PASSWORD $@ || { mv $@ $@.bak && cp $< $@ && \
	  echo "profiles.yml logged in as the admin: replaced from profiles.yml.example (the old one is profiles.yml.bak)"; }

setup: $(STAMP) profiles.yml ## create .venv with the pinned dependencies and profiles.yml

# dbt packages (packages.yml: our local dbt_expectations). dbt refuses to run while they are missing, so
# every target that runs dbt, directly or through Python (monitors, insights, tests, benchmarks), has this
# as a prerequisite: installed on first use after a fresh clone or `make clean` (dbt links the local
# package, so its timestamp says nothing about packages.yml); `make deps` reinstalls after a change.
DBT_PACKAGES := dbt_packages/dbt_expectations

$(DBT_PACKAGES): | setup
	$(DBT) deps --quiet

deps: setup ## dbt deps: install the dbt packages of packages.yml into dbt_packages/
	$(DBT) deps --quiet

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
	$(PY) -m orchestration.supervisor status --if-installed

psql: setup ## psql on the project's database (the embedded one after `make up`); PSQL_ARGS=... passed on
	@$(RUN) env -- psql $(PSQL_ARGS)

db: setup ## create database, roles, schemas and raw tables (idempotent)
	$(RUN) db init

generate: up ## synthetic data (SCALE=appointments, SEED=n, GENERATE_ARGS=...), events sent to Kafka
	$(RUN) generate --scale $(SCALE) --seed $(SEED) --out $(GENERATED) $(GENERATE_ARGS)
	$(RUN) produce --from-jsonl $(GENERATED)/events

load: up ## every loader once, draining what is there (the video platform's API too when configured or embedded)
	$(RUN) load

serve: up ## ingest as a service in the foreground (consumer + feedback watcher, metrics on 127.0.0.1:9108); Ctrl-C stops it
	$(RUN) serve $(SERVE_ARGS)

build: setup $(DBT_PACKAGES) ## dbt build: seeds, snapshots, models, tests (SELECT=..., SELECTOR=hourly, FULL_REFRESH=1)
	$(DBT) build $(select_flag) $(if $(FULL_REFRESH),--full-refresh,)

insights: setup $(DBT_PACKAGES) ## print the Key Insights tables (the dbt analyses) from the marts
	$(RUN) insights

freshness: setup $(DBT_PACKAGES) ## dbt source freshness
	$(DBT) source freshness

monitor: setup $(DBT_PACKAGES) ## freshness and tests as monitors, results stored, alerts sent where configured
	$(PY) -m monitors $(MONITOR_ARGS)

dashboards: setup ## offline HTML dashboards; Metabase provisioning when METABASE_URL is set
	$(PY) -m dashboards

# Debian packages the tests need (never a downloaded build): installed when missing and running as root
# (CI); otherwise this says so, and the tests that need them fail with the same message.
# apt-get waits for dpkg's lock (`make test` installs both packages at once) instead of failing on it.
APT_WAIT := -o DPkg::Lock::Timeout=600
# $(call debian_package,PATH,PACKAGE,WHAT NEEDS IT)
define debian_package
	@if [ -e "$(1)" ]; then \
		echo "$(2): $(1)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "$(2): $(1) is missing; installing Debian's $(2) package for $(3)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq $(APT_WAIT) $(2) >/dev/null 2>&1 \
			|| { apt-get update -qq $(APT_WAIT) && apt-get install -y -qq $(APT_WAIT) $(2); } \
			|| echo "$(2): apt-get could not install $(2) (see above): $(3) will fail."; \
	else \
		echo "$(2): $(1) is missing and cannot be installed here (needs root and apt-get):"; \
		echo "$(2): $(3) will fail. Install Debian's $(2) (sudo apt-get install $(2))."; \
	fi
endef

chromium: ## Debian's chromium for the browser tests (apt-get install when root and missing)
	$(call debian_package,$(CHROMIUM),chromium,the browser tests)

faketime: ## Debian's faketime (libfaketime) for the faked-date runs (apt-get install when root and missing)
	$(call debian_package,/usr/bin/faketime,faketime,the faked-date runs)

docs: setup $(DBT_PACKAGES) ## dbt docs generate
	$(DBT) docs generate

docs-serve: docs ## dbt docs serve
	$(DBT) docs serve --host 127.0.0.1 --port $${DOCS_PORT:-8080}

bench: up $(DBT_PACKAGES) ## benchmarks, as ratios against references measured in the same run
	$(PY) -m benchmarks $(BENCH_ARGS)

# SCALE is the generator's 50000 unless given: the scale run's own default is issue 20's 10M appointments.
scale: up $(DBT_PACKAGES) ## the whole pipeline at SCALE appointments (10M unless given), per stage: time, rows/s, peak memory, CPU
	$(PY) -m benchmarks.scale --scale $(if $(filter file,$(origin SCALE)),10000000,$(SCALE)) --seed $(SEED) $(SCALE_ARGS)

lint-python: setup ## ruff and the layering check (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

# sqlfluff's dbt templater compiles the models, and compiling asks the database (is_incremental, run_query):
# `lint` and `format` start the embedded services first (`make test` lints through _lint, on its own server).
lint: up _lint ## lint-python and sqlfluff (dbt templater); MODEL=path limits sqlfluff

_lint: lint-python $(DBT_PACKAGES)
	$(RUN) env -- $(VENV)/bin/sqlfluff lint $(if $(MODEL),$(MODEL),models tests analyses snapshots) --disable-progress-bar

format: up $(DBT_PACKAGES) ## apply ruff format and sqlfluff fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
	$(RUN) env -- $(VENV)/bin/sqlfluff fix $(if $(MODEL),$(MODEL),models tests analyses snapshots) --disable-progress-bar

# The test runs write Python's bytecode caches (the git-ignored __pycache__ folders) even where the
# environment sets PYTHONDONTWRITEBYTECODE, as this machine's does: without them every pytest process (a
# worker, a faked date) rewrites and compiles each test module again, 3.8 s of CPU to collect the suite
# instead of 1.9, and every Python process a test starts compiles the project's modules again.
WITH_BYTECODE_CACHES := env -u PYTHONDONTWRITEBYTECODE

# The embedded Postgres sizes itself to the machine (runtime/pgtuning.py: 4 GB of buffers here). The test
# targets start several servers at once (the shared one, the reliability rig's, a faked date's, the
# services tests'), so each is sized to TEST_PG_MEMORY_MB instead: 1 GB gives 256 MB of buffers.
TEST_PG_MEMORY_MB ?= 1024
# The targets that run the tests (each sets what follows for itself and what it starts).
TEST_TARGETS := test test-fast pytest test-dates dbt-test soak fuzz
$(TEST_TARGETS): export TELEMED_PG_MEMORY_MB ?= $(TEST_PG_MEMORY_MB)
# dbt's file log (logs/dbt.log, or a test world's own) keeps warnings and errors in the test targets: its
# debug lines (every event of every node) cost 7% of the CPU of a run of the data tests (0.8 of 12
# CPU-seconds) and nobody reads them after a passing run. DBT_LOG_LEVEL_FILE=debug make test writes them.
$(TEST_TARGETS): export DBT_LOG_LEVEL_FILE ?= warn

# The project's venv and the Debian packages install at once (uv or pip, and apt-get, on a fresh clone or CI).
test: ## every check on an isolated database: lint, pytest, faked dates, dbt build
	@$(MAKE) --no-print-directory -j3 --output-sync=target setup chromium faketime
	$(RUN) services run -- $(WITH_BYTECODE_CACHES) PGDATABASE=$(TEST_DATABASE) TELEMED_AS_OF=$(TEST_AS_OF) \
		$(MAKE) --no-print-directory _test

# Lint, the faked dates and the dbt build run beside pytest, which spends much of its time waiting on
# killed, paused and restarting servers: their output goes to a log each, printed after pytest's. Every
# phase runs to its end; the target fails if any of them failed, and says which. Airflow's environment
# (needed by pytest's DAG tests) is made first on a fresh clone, while the phases beside pytest start.
TEST_LOGS := $(or $(TELEMED_STATE_DIR),.local)/artifacts/make-test
BESIDE_PYTEST := test-lint test-dates dbt-test

# The dbt packages are installed here, once, before the phases start: each phase's own make would
# otherwise find them missing on a fresh clone and run `dbt deps` at the same moment as the others, and
# one dbt deps then finds the package link another is making ("resolves outside of the
# packages-install-path").
_test: $(DBT_PACKAGES)
	$(RUN) db drop --database $(PGDATABASE)
	$(RUN) db init
	@rm -rf $(TEST_LOGS) && mkdir -p $(TEST_LOGS)
	@set +e; pids=""; \
	for phase in $(BESIDE_PYTEST); do \
		$(MAKE) --no-print-directory $$phase DATE_JOBS=1 > $(TEST_LOGS)/$$phase.log 2>&1 & pids="$$pids $$phase:$$!"; \
		echo "== make $$phase runs beside pytest (log $(TEST_LOGS)/$$phase.log)"; \
	done; \
	$(MAKE) --no-print-directory pytest; failed=$$([ $$? = 0 ] || echo " pytest"); \
	for entry in $$pids; do \
		phase=$${entry%%:*}; wait $${entry##*:}; status=$$?; \
		echo "== make $$phase (exit $$status):"; cat $(TEST_LOGS)/$$phase.log; \
		[ $$status = 0 ] || failed="$$failed $$phase"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: failed:$$failed"; exit 1; fi; \
	echo "make test: pytest and $(BESIDE_PYTEST) passed"

# `make lint` inside `make test`, beside the dbt build: sqlfluff's dbt templater compiles against an empty
# database and a target folder of its own, so what it renders (is_incremental() false everywhere) never
# depends on how far the build beside it has got, and neither writes the other's artifacts.
LINT_DATABASE = $(PGDATABASE)_lint
test-lint:
	@$(RUN) db drop --database $(LINT_DATABASE) && PGDATABASE=$(LINT_DATABASE) $(RUN) db init
	@set +e; PGDATABASE=$(LINT_DATABASE) DBT_TARGET_PATH=$(TEST_LOGS)/lint-target $(MAKE) --no-print-directory _lint; \
	status=$$?; $(RUN) db drop --database $(LINT_DATABASE); exit $$status

pytest: setup $(DBT_PACKAGES) $(AIRFLOW_STAMP) ## the Python tests (unit and integration on the real Postgres and broker), PYTEST_WORKERS in parallel
	$(WITH_BYTECODE_CACHES) $(VENV)/bin/pytest $(XDIST) $(PYTEST_ARGS)

test-fast: lint-python $(DBT_PACKAGES) ## the inner loop (under a minute): lint-python, pytest without the slow and fault suites
	$(RUN) services run -- $(WITH_BYTECODE_CACHES) $(VENV)/bin/pytest $(XDIST) -m "not slow and not faults" -q $(PYTEST_ARGS)

# Tests never read the wall clock (see docs/tests.md); this proves it: the date-sensitive
# tests (marker `dates`) run again under five faked dates, Python and the warehouse clock both faked.
test-dates: setup faketime $(DBT_PACKAGES) ## the date-sensitive tests under five faked dates (month end, Monday, holiday, 29 Feb, a year on)
	$(RUN) services run -- $(WITH_BYTECODE_CACHES) $(PY) -m testkit.fake_dates --jobs $(DATE_JOBS) -- \
		$(VENV)/bin/pytest -m dates -q -p no:cacheprovider $(PYTEST_ARGS)

# The reliability suite runs in `make test` at the fast scale; this is its long variant (tens of minutes).
# It starts its own Postgres and broker, so it needs no `make up`.
.PHONY: soak
soak: setup $(DBT_PACKAGES) ## the reliability and security suite at soak scale (longer outages, more kills and events)
	RELIABILITY_SCALE=soak $(VENV)/bin/pytest loaders/tests/reliability $(PYTEST_ARGS)

# The property tests (loaders/tests/properties, hypothesis) run in `make test` with a few derandomized
# examples; this runs them with FUZZ_FACTOR times more, from a random seed it prints (FUZZ_SEED=n repeats a
# run), plus test_value_edges.py, whose dbt build then takes a bigger generated batch.
FUZZ_FACTOR ?= 20
# Drawn once when make reads this file (`:=`): a recursive variable would draw a new seed at every use, and
# the seed printed would not be the seed run.
ifndef FUZZ_SEED
FUZZ_SEED := $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
endif
.PHONY: fuzz
fuzz: setup $(DBT_PACKAGES) ## the property tests, FUZZ_FACTOR (20) times longer, random seed (FUZZ_SEED=n repeats one)
	@echo "fuzz: hypothesis seed $(FUZZ_SEED); repeat with: make fuzz FUZZ_SEED=$(FUZZ_SEED)"
	$(RUN) services run -- env HYPOTHESIS_PROFILE=fuzz FUZZ_FACTOR=$(FUZZ_FACTOR) $(VENV)/bin/pytest \
		loaders/tests/properties loaders/tests/test_value_edges.py -n 2 --dist loadfile -p no:cacheprovider \
		--hypothesis-seed=$(FUZZ_SEED) $(PYTEST_ARGS)

# dbt needs data: a small generated world, loaded through the real loaders (own topic and folders).
dbt-test: setup $(DBT_PACKAGES) ## dbt build with every test on a small generated world (run by `make test` on its database)
	rm -rf $(TEST_DATA)
	$(RUN) generate --scale $(TEST_SCALE) --seed $(SEED) --out $(TEST_DATA)/generated --landing $(TEST_DATA)/landing
	$(RUN) reference
	$(RUN) produce --from-jsonl $(TEST_DATA)/generated/events --topic $(TEST_TOPIC)
	$(RUN) consume --drain --topic $(TEST_TOPIC) --group $(TEST_TOPIC).loader
	$(RUN) feedback --landing $(TEST_DATA)/landing
	$(RUN) video-api run --data $(TEST_DATA)/generated/video_api -- $(RUN) api
	$(DBT) build --full-refresh
	$(DBT) source freshness

# The demo (demo/__main__.py): one line per step, the full output in .local/logs/demo-<time>.log, then the
# warnings explained, the Key Insights and what to open next. Its world ends on the generator's default
# period end (2026-10-31); LATE_AS_OF is when the late round brings the week's late events and forms.
LATE_AS_OF ?= 2026-11-07T00:00:00Z

demo: $(DBT_PACKAGES) ## from a fresh clone: services, data, load, dbt build, late data, monitors, dashboards, insights
	@$(PY) -m demo --scale $(SCALE) --seed $(SEED) --late-as-of $(LATE_AS_OF) $(DEMO_ARGS)

retention: setup ## what retention.yml says is due, per table (a dry run); APPLY=1 deletes it (AS_OF=... pins the clock)
	$(RUN) retention $(if $(APPLY),--apply,) $(if $(AS_OF),--as-of $(AS_OF),) $(RETENTION_ARGS)

erase: setup ## remove one patient's identifiers everywhere: make erase PATIENT_ID=... [REQUEST_REF=...]
	$(RUN) erase --patient-id "$(PATIENT_ID)" $(if $(REQUEST_REF),--request-ref "$(REQUEST_REF)",)

# Apache Airflow in an environment of its own (orchestration/requirements-airflow.txt), made on first use of
# an Airflow target, so `make setup` and `make demo` never install it. Cosmos renders the dbt project from
# target/airflow/manifest.json (airflow-manifest), the DAGs' commands run in .venv.

$(AIRFLOW_STAMP): orchestration/requirements-airflow.txt | setup
	@test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(call install_requirements,$(AIRFLOW_VENV)/bin/python,orchestration/requirements-airflow.txt,$(AIRFLOW_NO_TELEMETRY))
	@$(call compile_old_venv,$(AIRFLOW_VENV))
	@rm -f $(AIRFLOW_VENV)/.installed-* && touch $@

airflow-venv: $(AIRFLOW_STAMP) ## Airflow's own environment (.local/airflow/venv), from orchestration/requirements-airflow.txt

airflow-manifest: setup $(DBT_PACKAGES) ## dbt parse into target/airflow: the manifest the DAGs are rendered from
	$(DBT) parse --quiet --target-path target/airflow

airflow: up $(AIRFLOW_STAMP) airflow-manifest ## Airflow on 127.0.0.1 (UI, scheduler, dag-processor); prints the URL and login
	$(PY) -m orchestration.supervisor up

airflow-down: setup ## stop Airflow
	$(PY) -m orchestration.supervisor down

airflow-lock: ## re-pin orchestration/requirements-airflow.txt (needs the network)
	rm -rf .local/airflow-lockenv && $(PYTHON) -m venv .local/airflow-lockenv
	.local/airflow-lockenv/bin/pip install --quiet 'apache-airflow[postgres]==3.3.2' 'astronomer-cosmos==1.15.1'
	{ sed -n '1,/^# Regenerate/p' orchestration/requirements-airflow.txt; \
	  .local/airflow-lockenv/bin/pip freeze | grep -v '^pip=='; } > orchestration/requirements-airflow.txt.new
	mv orchestration/requirements-airflow.txt.new orchestration/requirements-airflow.txt

test-airflow: setup $(DBT_PACKAGES) $(AIRFLOW_STAMP) ## the Airflow tests alone (DagBag, airflow dags test, alerts); `make pytest` runs them too
	$(RUN) services run -- $(VENV)/bin/pytest orchestration/tests -q $(PYTEST_ARGS)

clean: ## remove build output (keeps .local data and .venv)
	rm -rf target dbt_packages logs
