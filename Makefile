# Two commands from a fresh clone: `make dev` and `make test`. Both create .venv
# and install the project with its dev extras first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test lint bench-ingress bench-workers bench-portal clean

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
	# saq is measured beside us; it is a benchmark's dependency, not the project's.
	$(BIN)/pip install --quiet 'saq>=0.26,<0.27'
	$(BIN)/python bench/workers.py --events 2000 --slow-events 60 --rounds 2

bench-portal: $(STAMP)
	$(BIN)/python bench/portal_transport.py

clean:
	rm -rf $(VENV) .wabahooks .pytest_cache .mypy_cache .ruff_cache
