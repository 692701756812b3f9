# Everything runs inside .venv, created on first use, so a fresh machine needs only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned here (dev/CI) only: 2.13.0 is the CPU build our machines install from local disk.
TORCH_PIN := torch==2.13.0

.PHONY: install demo test lint clean

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

# The main job: the example suites on every platform this machine has, with a hardware report.
demo: install
	$(BIN)/hwbench info
	$(BIN)/python -m pytest example_suites -p no:cacheprovider --hw-report=reports/hw-report.json $(PYTEST_ARGS)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check pytest_hwbench tests benchmarks example_suites
	$(BIN)/ruff format --check pytest_hwbench
	$(BIN)/mypy --strict pytest_hwbench
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
