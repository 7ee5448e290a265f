# The two commands the README opens with: `make run` and `make test`.
# The test suite runs the benchmark's quick variant, so one environment holds
# the dev and bench extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint demo bench migrate

run: $(STAMP)
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: $(STAMP)
	scripts/ensure-test-tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Bring the database schema to this botmon's (the service also does so at start
# unless BOTMON_AUTO_MIGRATE=false).
migrate: $(STAMP)
	$(BIN)/python -m botmon.migrate

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

demo: $(STAMP)
	$(BIN)/flask --app botmon demo-bot $(DEMO_ARGS)

# The benchmark: botmon beside a reference server; BENCH_ARGS=--quick for ~1 min.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)
