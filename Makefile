# fastconv: the two commands a newcomer runs are `make run` and `make test`.
# Each creates .venv, installs fastconv with its extras and builds the Cython
# kernels first, so they work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test build bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=68" wheel

# Build requirements first, then the package itself (editable, extensions built in place).
$(STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/python -m pip install -q "Cython>=3.0" "numpy>=1.26" "scipy>=1.11"
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[test]"
	touch $(STAMP)

# Recompile any .pyx that changed since the last build.
build: $(STAMP)
	$(BIN)/python setup.py -q build_ext --inplace 2>&1 | grep -vE "^(running|copying|warning: no)" || true

run: build
	$(BIN)/fastconv demo

test: build
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) tests

bench: build
	$(BIN)/fastconv bench --quick

clean:
	rm -rf build $(VENV) *.egg-info kernels/cython/*.c kernels/cython/*.so
