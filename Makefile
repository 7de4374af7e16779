# Two commands a newcomer needs: `make demo` and `make test`.
# `make demo ARGS="--rounds 5 --dataset digits"` passes options to `secureagg demo`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-fast lint typecheck pytest bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,flower]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/secureagg demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check secureagg tests benchmarks examples
	$(BIN)/ruff format --check secureagg tests benchmarks examples
	$(BIN)/lint-imports  # the layers and private modules of [tool.importlinter] in pyproject.toml

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck docs pytest

# The documentation site with its API reference (mkdocs.yml), into site/; --strict: a broken
# link, snippet or docstring reference fails the build.
.PHONY: docs
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The inner loop: unit, vector and property tests not marked slow (under 3 minutes on
# 2 cores). `make test` is still the whole suite, and what CI runs.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests/unit tests/vectors tests/property

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache build dist site

# Flower's deployment engine end to end, alone: a SuperLink and 3 SuperNodes as processes on
# 127.0.0.1 run examples/flower_app for 2 secure rounds (157 s measured on 2 busy cores, see
# docs/benchmarks.md; it is also part of `make test`; tests/integration/test_flower_deployment.py).
.PHONY: e2e
e2e: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration/test_flower_deployment.py
