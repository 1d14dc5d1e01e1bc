# The two commands of the README: `make run` and `make test`. Both create the virtual
# environment and install the package (compiling the Cython extensions) when needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCES := pyproject.toml setup.py $(wildcard cext/*.pyx cext/*.pxd quota_engine/*/*.pyx quota_engine/*/*.pxd)

.PHONY: install run test lint bench clean

$(STAMP): $(SOURCES)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/ocs serve $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m mypy.stubtest --mypy-config-file pyproject.toml \
		--allowlist stubtest_allowlist.txt --ignore-unused-allowlist \
		cext.codec quota_engine.charging.rating

test: lint
	$(BIN)/pytest

bench: install
	$(BIN)/pytest tests/benchmarks --benchmark-only --benchmark-enable --benchmark-columns=min,mean,median,ops

clean:
	rm -rf $(VENV) build *.egg-info cext/*.c cext/*.so quota_engine/*/*.c quota_engine/*/*.so
