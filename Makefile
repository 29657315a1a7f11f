# Every target here is used by the README or by CI.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck check dev bench crash-matrix chaos

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Run the bundled offline scenario through the real graph (scripted model replies).
demo: $(STAMP)
	$(BIN)/planexec demo $(if $(CI),--yes,)

## Run the test suite.
test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

## LangGraph Studio: the local server for langgraph.json, offline; it prints the Studio URL.
## Tracing stays off unless LANGSMITH_TRACING=true is set (with LANGSMITH_API_KEY).
dev: $(STAMP)
	LANGSMITH_TRACING=$${LANGSMITH_TRACING:-false} LANGGRAPH_NO_VERSION_CHECK=true \
		LANGGRAPH_CLI_NO_ANALYTICS=1 $(BIN)/langgraph dev --no-browser

## The benchmarks whose numbers are in the README.
bench: $(STAMP)
	$(BIN)/python -m bench

## The full crash matrix: kill -9 at every checkpoint boundary of each plan, ten times (minutes).
crash-matrix: $(STAMP)
	$(BIN)/pytest -m crash_matrix tests/test_crash_matrix.py

## The chaos soak whose numbers are in the README: random kills and 5% model faults.
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos
