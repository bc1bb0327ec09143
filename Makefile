# mt: `make install && make demo` runs the main job; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch goes in first, pinned, so that pip never swaps in another build (e.g. a multi-GB CUDA
# build on a CPU machine). On a CPU-only machine with internet, add
# TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
DEMO_MINUTES ?= 5
PYTEST_ARGS ?=

.PHONY: install test lint data demo clean

install: $(BIN)/mt

$(BIN)/mt: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_INDEX) "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev,export]"
	@touch $@

test: install
	WANDB_MODE=disabled $(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check mt scripts tests

data: install
	$(BIN)/python scripts/download_data.py --corpus all --out data

demo: install
	$(BIN)/python scripts/demo.py --minutes $(DEMO_MINUTES)

clean:
	rm -rf runs lightning_logs .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
