# ackflow developer entry points. `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: help venv setup demo test unit contract e2e chaos fuzz mutants sim sim-replay sim-mutants cluster bench lint typecheck check clean services screenshots

help:
	@echo "make demo       run a demo flow in local mode (no broker, no Redis needed)"
	@echo "make test       set up what is missing (.ci/setup.sh), then run the whole test suite"
	@echo "make unit       unit tests only (no network)"
	@echo "make fuzz       property-based fuzzing of every boundary, many more inputs (prints counts)"
	@echo "make chaos      the long chaos suite (kills engines and workers mid-flow)"
	@echo "make mutants    plant each bug of tests/mutants/table.py; fail if a test suite misses one"
	@echo "make sim        deterministic simulator: SIM_SECONDS (600) of seeds from SIM_SEED (random)"
	@echo "make sim-replay replay one simulated seed: SIM_SEED=<n> make sim-replay"
	@echo "make sim-mutants run the simulator against the mutants it can see (under 5 minutes)"
	@echo "make cluster    scale-out soak: kill RabbitMQ nodes (and Redis masters) under load (cluster-report.json)"
	@echo "make bench      ackflow vs Celery and TaskFlow, side by side (tables + bench-report.json)"
	@echo "make check      ruff lint + format check + mypy (strict)"
	@echo "make services   start local RabbitMQ and Redis if they are down (Debian packages)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	@if [ -n "$$ACKFLOW_BROKER_URL" ] && [ -n "$$ACKFLOW_REDIS_URL" ]; then \
		$(PY) -m runner.examples.distributed_demo; \
	else \
		$(VENV)/bin/ackflow run runner.examples.demo:checkout --input order_id=42 && \
		echo && echo "--- a lazy task: an approval completed by an outside callback ---" && \
		$(PY) -m runner.examples.approval; \
	fi

# A fresh machine needs nothing else: .ci/setup.sh installs Chromium for the browser tests and
# Prometheus (promtool) for the alert-rule and dashboard tests, and starts RabbitMQ + Redis when missing (quick when all is there). `make unit` sets up nothing.
setup: $(STAMP)
	@PY=$(PY) bash .ci/setup.sh

test: setup
	$(PY) -m pytest -q tests

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

contract: $(STAMP)
	$(PY) -m pytest -q tests/contract

e2e: $(STAMP)
	$(PY) -m pytest -q tests/e2e

chaos: $(STAMP)
	ACKFLOW_CHAOS_FULL=1 $(PY) -m pytest -q -s tests/chaos

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q -m fuzz --timeout 1800 --hypothesis-show-statistics tests

screenshots: $(STAMP)
	ACKFLOW_SCREENSHOTS=$(CURDIR)/docs $(PY) -m pytest -q tests/browser

# Each mutant alone on a temporary copy of the tree, MUTANTS_JOBS (default 2) at a time;
# MUTANTS="M3 M11" runs only those. Exits non-zero if any mutant survives the fast suites.
mutants: $(STAMP)
	$(PY) -m tests.mutants.run

# The deterministic simulator (tests/sim): real engine and worker code, stepped, under faults.
sim: $(STAMP)
	PYTHONHASHSEED=0 $(PY) -m tests.sim

sim-replay: $(STAMP)
	@test -n "$$SIM_SEED" || { echo "usage: SIM_SEED=<seed> make sim-replay"; exit 2; }
	PYTHONHASHSEED=0 $(PY) -m tests.sim --replay $$SIM_SEED

sim-mutants: $(STAMP)
	PYTHONHASHSEED=0 $(PY) -m tests.sim.mutants

# Own 3-node RabbitMQ cluster (needs root here) and Redis; see tests/cluster/soak.py. Under 10 minutes.
cluster: $(STAMP)
	$(PY) -m tests.cluster.soak

# The peers (Celery, TaskFlow) come from the `bench` extra, installed once (BENCH_ARGS: e.g. --quick).
BENCH_STAMP = $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(VENV)/bin/ackflow --log-level warning bench --json bench-report.json $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check runner workers tests
	$(VENV)/bin/ruff format --check runner workers tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck

services:
	@bash .ci/services.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
