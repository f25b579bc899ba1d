# Everything a fresh machine needs, in two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help venv demo test test-fast test-faults-long lint docs bench bench-servers bench-compare bench-storm bench-scale scale-out screenshots clean

help:
	@echo "make demo   - venv, install, migrate, serve the example at http://$(HOST):$(PORT)"
	@echo "make test   - venv, install, run the whole test suite"
	@echo "make test-faults-long - the fault-injection suite with 1,000 resuming streams"
	@echo "make lint   - ruff and mypy"
	@echo "make docs   - build the Sphinx docs with warnings as errors"
	@echo "make bench  - fan-out, burst and idle memory: django_sse, the floor, django-eventstream"
	@echo "make bench-servers - fan-out to 10,000, burst, idle: uvicorn h11, uvicorn httptools+uvloop, daphne"
	@echo "make bench-compare - every delivery scenario and library (installs the bench extra)"
	@echo "make bench-storm - the resume storm (10,000 streams, server killed and restarted)"
	@echo "make bench-scale - 2 and 4 uvicorn processes behind nginx, 20,000 streams"
	@echo "make scale-out - the example on 3 processes behind nginx, sharing Redis"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	cd example_project && ../$(PY) manage.py migrate --noinput
	cd example_project && ../$(PY) manage.py seed_demo
	@echo "Serving the example at http://$(HOST):$(PORT)/ (Ctrl-C to stop)"
	cd example_project && ../$(PY) -m daphne -b $(HOST) -p $(PORT) example_project.asgi:application

# The whole suite on SQLite, then the database-facing tests again on PostgreSQL
# (127.0.0.1:5432; they skip with the reason when it is absent).
PG_TESTS := tests/test_publish.py tests/test_channels.py tests/test_view.py tests/test_store.py tests/test_resume.py tests/test_connections.py tests/test_hooks.py tests/test_notify.py tests/test_admin.py tests/test_api.py tests/test_templatetags.py tests/test_access.py tests/test_debounce.py tests/test_testing.py

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)
	SSE_TEST_POSTGRES=1 $(PY) -m pytest $(PYTEST_ARGS) $(PG_TESTS)

# The fault-injection suite (docs/faults.rst), long variant: 1,000+ resuming
# streams in the restart scenarios. By hand; `make test` runs the short one.
test-faults-long: $(STAMP)
	SSE_FAULTS_LONG=1 $(PY) -m pytest $(PYTEST_ARGS) -m faults tests/faults

lint: $(STAMP)
	$(PY) -m ruff check django_sse tests example_project benchmarks
	$(PY) -m ruff format --check django_sse tests example_project benchmarks
	$(PY) -m mypy django_sse

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	$(PY) benchmarks/bench.py

bench-servers: $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	$(PY) benchmarks/bench.py --server uvicorn,uvicorn-httptools,daphne \
		--targets fast,floor,peer --sizes 100,1000,3000,10000 --idle 1000,3000

bench-compare: $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	$(PY) benchmarks/compare.py

bench-storm: $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	$(PY) benchmarks/bench.py --scenario resume-storm

bench-scale: $(STAMP)
	$(PY) benchmarks/bench.py --scenario multi-process

# Refresh the docs' screenshots of the example (taken by its browser tests).
screenshots: $(STAMP)
	SSE_UPDATE_SCREENSHOTS=1 $(PY) -m pytest -q tests/test_example_browser.py

# Several example processes behind nginx, sharing Redis (REDIS_URL, default :6379).
scale-out: $(STAMP)
	$(PY) example_project/deploy/scale_out.py --port $(PORT)

clean:
	rm -rf $(VENV) docs/_build .pytest_cache .mypy_cache .ruff_cache build *.egg-info
