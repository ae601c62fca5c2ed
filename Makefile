# The two README commands: `make demo` and `make test`. Everything else is a helper.
VENV ?= .venv
BIN := $(VENV)/bin
ASSETLIB_HOME ?= $(HOME)/.assetlib
DEMO_MODEL := $(ASSETLIB_HOME)/models/siglip-demo/model

.PHONY: demo test install lint bench-store clean-db

install:
	scripts/bootstrap.sh

# Until the pipeline runner lands (issue #10), the demo is these stages in order; each reuses its
# previous output, so a second run takes about a minute.
demo: install
	$(BIN)/assetlib library demo --run-dir outputs/library
	$(BIN)/assetlib train --name demo
	$(BIN)/assetlib embed --algorithm siglip:$(DEMO_MODEL) --run-dir outputs/embed
	$(BIN)/assetlib embed --algorithm e5 --run-dir outputs/embed
	SIGLIP_MODEL=$(DEMO_MODEL) $(BIN)/assetlib evaluate --run-dir outputs/evaluate
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
