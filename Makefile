# Set-up and checks. `make test` creates the virtual environment itself on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Written only after pip succeeded: an install cut short (Ctrl-C, lost network) leaves no stamp, so the
# next `make` runs pip again; pip then completes what is missing. A newer pyproject.toml reinstalls too.
STAMP := $(VENV)/.installed

.PHONY: venv test lint bench clean
.DELETE_ON_ERROR:

$(STAMP): pyproject.toml
	@rm -f $@
	@$(BIN)/python -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $@

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .

test: venv lint
	$(BIN)/pytest -q -W ignore::DeprecationWarning

bench: venv
	$(BIN)/python -m bench.engine --out bench/results/engine.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
