# Two commands from a fresh clone: `make dev` and `make test`. Both create .venv
# and install the project with its dev extras first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint bench-ingress bench-workers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/wabahooks dev

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check service workers tests bench
	$(BIN)/ruff format --check service workers tests bench
	$(BIN)/mypy

bench-ingress: $(STAMP)
	$(BIN)/python bench/ingress.py

bench-workers: $(STAMP)
	$(BIN)/python bench/workers.py --events 1500 --rounds 3

clean:
	rm -rf $(VENV) .wabahooks .pytest_cache .mypy_cache .ruff_cache
