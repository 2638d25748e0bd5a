# The two commands of the README:
#   make demo      set up .venv and run the demo sweep end to end (snakemake --profile profiles/local)
#   make test      set up .venv and run the fast test tier (a few minutes on 2 cores), with its coverage
# and the full suite, what .ci/run calls:
#   make test-all  the fast tier, then the slow tier (sweeps, Slurm, the browser, bench dry runs), coverage of
#                  each tier and of both; fails when a module of src/ is covered by the slow tier alone
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# pytest-xdist workers: tests sharing a sweep stay on one worker (tests/conftest.py, GROUP_BY_FIXTURE). On 2 cores,
# 3 workers made the slow tier slower (22.2 vs 21.8 min): its sweeps then compete for the cores
JOBS   ?= 2
PYTEST := $(BIN)/coverage run -m pytest -n $(JOBS) --dist loadgroup

.PHONY: setup demo test test-all lint clean

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -e .
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/snakemake --profile profiles/local

test: setup
	rm -f .coverage .coverage.* .coverage-fast*
	COVERAGE_FILE=.coverage-fast $(PYTEST) -m "not slow"
	$(BIN)/python tests/coverage_tiers.py --fast .coverage-fast

test-all: setup
	rm -f .coverage .coverage.* .coverage-fast* .coverage-slow*
	COVERAGE_FILE=.coverage-fast $(PYTEST) -m "not slow"
	COVERAGE_FILE=.coverage-slow $(PYTEST) -m slow
	$(BIN)/python tests/coverage_tiers.py --fast .coverage-fast --slow .coverage-slow --check

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check workflow

clean:
	rm -rf results benchmarks .snakemake .coverage .coverage.* .coverage-fast* .coverage-slow* htmlcov
