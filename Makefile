# The README's two commands: `make run` (set up + the nightly import through Airflow on
# synthetic exports) and `make test` (set up + the whole test suite). Both bootstrap uv
# with pip when it is missing and install exactly what uv.lock pins, with this machine's
# Python 3.11 (no interpreter downloads).

export UV_PYTHON_DOWNLOADS := never
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV := $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)
VENV := .venv
HOME_DIR ?= var
PATIENTS ?= 300

.PHONY: install run test lint typecheck airflow bench clean

.uv/bin/uv:
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet uv==0.13.9

$(VENV)/.installed: pyproject.toml uv.lock hatch_build.py etl/extract/_odm_walk.c | $(UV)
	$(UV) sync --frozen --all-extras --compile-bytecode --python $(PYTHON)
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/rtw demo --home $(HOME_DIR) --patients $(PATIENTS)

# Four workers on this machine's two cores: the DAG, Celery and subprocess tests wait on their
# children (and validations on GX's process), and more workers fill those waits (measured: 1.79 cores
# busy with two workers, 1.9 with three; the suite in 14 min 26 s with three, 13 min 6 s with four).
# --dist loadfile keeps each module on one worker, so a module's whole-run fixture is
# built once; the 400-person run of conftest.py is built once for all workers. The modules are handed
# out in the order tests/conftest.py gives them, the Airflow modules first (--no-loadscope-reorder: xdist's own
# order put the Airflow modules last). The slowest tests are listed at the end (the suite must stay
# under 15 minutes here).
TEST_WORKERS ?= 4

# The tests write their bytecode even where the environment says not to (PYTHONDONTWRITEBYTECODE, set on this
# machine): pytest would rewrite and compile every test module's assertions anew in each worker (its collection
# 14 s a worker instead of 5).
# mypy checks beside the tests (27 s on one core before them, the other idle); its verdict is said after them and
# fails the target as theirs does.
test: install
	$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy > .mypy.out 2>&1 & types=$$!; \
	env -u PYTHONDONTWRITEBYTECODE $(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=20; tests=$$?; \
	wait $$types; typed=$$?; cat .mypy.out; rm -f .mypy.out; \
	[ $$tests -eq 0 ] && [ $$typed -eq 0 ]

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

# Issue 11's figures: per step time and peak memory, and each ratio next to its limit, for 2,000
# and 20,000 persons (BENCH_FLAGS=--largest adds 100,000); written to benchmarks/results/<date>.json
# (<date>-2.json for a second one that day).
bench: install
	$(VENV)/bin/python benchmarks/bench.py $(BENCH_FLAGS)

airflow: install
	$(VENV)/bin/rtw airflow --home $(HOME_DIR)

clean:
	rm -rf $(HOME_DIR) .pytest_cache .ruff_cache .mypy_cache build
