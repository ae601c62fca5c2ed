# The two README commands: `make demo` and `make test`. Everything else is a helper.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install lint bench-store clean-db

install:
	scripts/bootstrap.sh

demo: install
	$(BIN)/assetlib library demo --run-dir outputs/library
	$(BIN)/assetlib db check

test: install
	$(BIN)/ruff check assetlib tests benchmarks
	$(BIN)/ruff format --check assetlib tests benchmarks
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check --fix assetlib tests benchmarks
	$(BIN)/ruff format assetlib tests benchmarks

bench-store: install
	$(BIN)/python benchmarks/store_bench.py

clean-db:
	$(BIN)/assetlib db stop
