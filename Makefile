# One file sets everything up: `make run` (the main job) and `make test` (the suite)
# work from a fresh clone. The environment lives in .venv/ and is rebuilt when the
# pinned requirements change.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt

export SAM_CLI_TELEMETRY := 0

.PHONY: run test setup lint bench-serving bench-training bench-pipeline clean

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt package.json package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements-dev.txt
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/python -m localcloud run

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench-serving: setup
	$(BIN)/python -m bench.serving

bench-training: setup
	$(BIN)/python -m bench.training

bench-pipeline: setup
	$(BIN)/python -m bench.pipeline

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .aws-sam .localcloud work
