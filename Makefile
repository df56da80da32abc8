# `make run` and `make test` do all set-up on a fresh machine: a .venv with the project installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m demo.setup
	$(BIN)/pinstripe list-background-jobs
	$(BIN)/pinstripe run-background-job --name deliver-notifications
	$(BIN)/pinstripe run-background-job --name send-email --arg user@example.com --arg 'Welcome!'
	$(BIN)/pinstripe run-background-job --name send-newsletter
	$(BIN)/pinstripe run-background-job --name risky-operation; \
	  echo "risky-operation exited with $$? (1 = a run failed), as the demo expects"

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check pinstripe_jobs tests benchmarks demo jobs
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pinstripe demo/tenants.db
