# `make test` and `make serve` work on a fresh machine with python3 (>= 3.11) and make.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# torch first, from the versions this project is tested with (a CUDA build on x86_64, CPU on aarch64).
ifeq ($(shell uname -m),aarch64)
TORCH := torch==2.9.1 torchvision==0.24.1
else
TORCH := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: venv test lint serve clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest -q

serve: venv
	$(BIN)/ddpm serve

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
