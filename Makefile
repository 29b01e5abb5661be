# Set-up and checks. `make test` creates the virtual environment itself on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv test lint bench clean

$(BIN)/sam3-agent: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $@

venv: $(BIN)/sam3-agent

lint: venv
	$(BIN)/ruff check .

test: venv lint
	$(BIN)/pytest -q -W ignore::DeprecationWarning

bench: venv
	$(BIN)/python bench/engine.py --out bench/results/engine.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
