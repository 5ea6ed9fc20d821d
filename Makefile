# Common commands. Each target sets up what it needs on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Tools that wheels install into the venv (hadolint) are found by the tests too.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test test-unit test-integration lint bench setup system-deps clean

$(BIN)/tidemark: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/tidemark

setup: $(BIN)/tidemark

## The embedded demo: mock Kafka cluster, fault-injecting producer, /metrics on :9308
demo: setup
	$(BIN)/tidemark demo

## Everything CI runs: lint, types, unit, integration, deploy and end-to-end tests
test: setup system-deps lint
	$(BIN)/pytest -q

test-unit: setup
	$(BIN)/pytest -q tests/unit

lint: setup
	$(BIN)/ruff check monitor tests bench
	$(BIN)/ruff format --check monitor tests bench
	$(BIN)/mypy monitor bench

## Prometheus, promtool, Alertmanager and amtool from Debian, for the rule and e2e tests
system-deps:
	@bash scripts/system-deps.sh

bench: setup
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
