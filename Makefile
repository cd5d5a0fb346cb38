# The two commands a new machine needs are `make run` and `make test`; both
# create .venv and install the project with its dev extras when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast reliability lint bench schema clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/postwright validate
	$(BIN)/postwright serve

# Everything on SQLite, then the end-to-end scenarios again on a throwaway PostgreSQL
# server (skipped, saying why, where its binaries are not installed).
E2E := tests/test_scenarios_lifecycle.py tests/test_scenarios_delivery.py tests/test_server.py \
	tests/test_providers_e2e.py tests/test_against.py tests/test_scenarios_events.py \
	tests/test_subscribers_api.py tests/test_erasure.py tests/test_delivery_guarantees.py \
	tests/test_http_gate.py tests/test_stop_in_flight.py tests/test_backlog.py \
	tests/reliability/test_event_api_fuzz.py

test: $(STAMP)
	$(BIN)/pytest
	POSTWRIGHT_TEST_STORE=postgres $(BIN)/pytest $(E2E)

# The unit tier alone (tests/conftest.py assigns the tiers): seconds, for the edit-test loop.
test-fast: $(STAMP)
	$(BIN)/pytest -m unit

# The reliability suite at full length (docs/reliability.md): `make test` runs it briefly.
# -rP prints each test's figures.
reliability: $(STAMP)
	POSTWRIGHT_RELIABILITY=long $(BIN)/pytest -rP tests/reliability

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/actionlint .github/workflows/*.yml
	$(BIN)/hadolint deploy/Dockerfile
	$(BIN)/python scripts/check_deploy.py

bench: $(STAMP)
	$(BIN)/python benchmarks/validate.py

schema: $(STAMP)
	$(BIN)/postwright schema > schema/automation.schema.json
	$(BIN)/postwright schema --scenario > schema/scenario.schema.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
