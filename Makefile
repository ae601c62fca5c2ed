# The two README commands: `make demo` and `make test`. Everything else is a helper.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast install lint bench-store clean-db

install:
	scripts/bootstrap.sh

# The whole pipeline on the demo library (params/demo.yaml: build, train the demo SigLIP, embed,
# load PostgreSQL, evaluate; Qwen stages say "skipped: no API key" without DASHSCOPE_API_KEY), then
# the dashboard and the API, with screenshots of the dashboard saved in the run folder. Each stage
# reuses what an earlier run built, so a second run takes about a minute. Ctrl-C stops the servers.
demo: install
	$(BIN)/assetlib run params/demo.yaml
	$(BIN)/assetlib --params params/demo.yaml serve dashboard --screenshots outputs/latest/screenshots

test: install
	$(BIN)/ruff check assetlib tests benchmarks
	$(BIN)/ruff format --check assetlib tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest

# The inner loop: lint, types, and every test not marked slow (no papermill kernels, browsers,
# child processes or schemathesis), in about a minute and a half.
test-fast: install
	$(BIN)/ruff check assetlib tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -m "not slow"

lint: install
	$(BIN)/ruff check --fix assetlib tests benchmarks
	$(BIN)/ruff format assetlib tests benchmarks

bench-store: install
	$(BIN)/python benchmarks/store_bench.py

clean-db:
	$(BIN)/assetlib db stop
