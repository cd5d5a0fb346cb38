# The two commands a new machine needs are `make run` and `make test`; both
# create .venv and install the project with its dev extras when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench schema clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/postwright validate
	$(BIN)/postwright serve

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/actionlint .github/workflows/*.yml

bench: $(STAMP)
	$(BIN)/python benchmarks/validate.py

schema: $(STAMP)
	$(BIN)/postwright schema > schema/automation.schema.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
