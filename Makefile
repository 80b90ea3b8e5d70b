# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test check lint bench bench-intake bench-drain bench-outage setup clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	# The project itself, editable and without dependencies: puts the signup-admin command in .venv/bin.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

## Azurite + Graph emulator + the function app on http://127.0.0.1:7071 (Ctrl-C stops all).
run: setup
	$(PY) scripts/run.py

## The whole test suite; fixtures start and stop Azurite, the emulator and the host.
test: setup
	$(PY) -m pytest

## Lint, format check, type check, tests.
check: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m pytest

bench: bench-intake bench-drain bench-outage

bench-intake: setup
	$(PY) -m bench.intake

bench-drain: setup
	$(PY) -m bench.drain

bench-outage: setup
	$(PY) -m bench.outage

clean:
	rm -rf $(VENV) node_modules .azurite .run .pytest_cache .mypy_cache .ruff_cache
