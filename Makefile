# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test integration lint typecheck pytest bench vectors clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The demo needs only what `vrm` needs to run: no test or lint toolchain.
$(VENV)/.runtime: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

demo: $(VENV)/.runtime
	$(BIN)/vrm demo

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not integration"

# Whole conformance-suite runs through nginx, PostgreSQL workers, a mounted sub-app and a
# rate-limited target (~1.5 min): .ci/run runs them after make test.
integration: $(VENV)/.installed
	$(BIN)/python -m pytest -m integration

lint: $(VENV)/.installed
	$(BIN)/ruff check .

bench: $(VENV)/.installed
	$(BIN)/python bench/codec.py
	$(BIN)/python bench/inbox.py
	$(BIN)/python bench/inbox_phases.py
	$(BIN)/python bench/hostile.py
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/steps.py
	$(BIN)/python bench/events.py
	$(BIN)/python bench/intentcast.py
	$(BIN)/python bench/ui.py

vectors: $(VENV)/.installed
	$(BIN)/python scripts/gen_vectors.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
