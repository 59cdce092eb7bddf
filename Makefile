# The README's commands. Each target installs what it needs into .venv first.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install test run demo bench lint lock clean

$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@# Test-only: the invisible-watermark library's encoder makes the watermark tests' positives.
	@# Installed without its dependencies, which would pull torch; the tests load only its
	@# numpy/OpenCV encoder module.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps invisible-watermark==0.2.0
	@touch $@

install: $(VENV)/.installed

## Run the test suite (PostgreSQL tests use 127.0.0.1:5432 unless REMPART_TEST_POSTGRES_URL says otherwise).
test: install
	$(PY) -m pytest $(PYTEST_ARGS)

## The main job: the HTTP service on the embedded SQLite store (http://127.0.0.1:8000/docs).
run: install
	$(VENV)/bin/rempart serve

## Build a bank from the bundled examples and match edited copies against it.
demo: install
	$(VENV)/bin/rempart demo

## Benchmarks (long; they print JSON).
bench: install
	$(PY) bench/index_bench.py
	$(PY) bench/hash_bench.py
	$(PY) bench/batch_bench.py

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

## Re-pin dependencies after changing pyproject.toml.
lock:
	$(VENV)/bin/pip-compile -q --extra test --extra bench --extra dev --extra nudity --extra ray --no-emit-index-url \
		--no-emit-find-links --strip-extras -o requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
