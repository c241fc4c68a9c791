# Set-up and entry points. `make run` and `make test` work on a fresh machine with Python 3.11.
# GPU users: TORCH_SPEC="torch==2.5.1" (or any build for your CUDA) make run
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup run test bench clean

setup: $(VENV)/.installed

# torch first, from its own spec, so the package's torch range is already satisfied and pip
# never pulls a multi-gigabyte CUDA build by accident.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

run: setup
	$(BIN)/eventseg run $(ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python scripts/bench.py $(ARGS)

clean:
	rm -rf $(VENV) runs data/synthetic
