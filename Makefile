# `make run` and `make test` do all set-up on a fresh machine: a .venv with the project installed.
# `make run` installs what the demo needs (the project and its dashboard extra); `make test` and `make lint` add
# the development set (PostgreSQL driver, Celery, Playwright, kubernetes-validate, pytest, hypothesis, ruff, mypy).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_STAMP := $(VENV)/.installed-demo
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dashboard]'
	touch $(DEMO_STAMP)

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEMO_STAMP) $(DEV_STAMP)

install: $(DEV_STAMP)

run: $(DEMO_STAMP)
	$(BIN)/python -m demo.setup
	$(BIN)/pinstripe list-background-jobs
	$(BIN)/pinstripe run-background-job --name send-newsletter
	$(BIN)/pinstripe run-background-job --name deliver-notifications
	$(BIN)/pinstripe run-background-job --name send-email --arg user@example.com --arg 'Welcome!'
	$(BIN)/pinstripe run-background-job --name risky-operation; \
	  echo "risky-operation exited with $$? (1 = a run failed), as the demo expects"

test: $(DEV_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check pinstripe_jobs tests benchmarks demo jobs
	$(BIN)/mypy

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pinstripe demo/tenants.db demo/data
