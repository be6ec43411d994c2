# sbir_bench front door. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

METHOD ?= cvae
DATA ?=
SEEDS ?= 0
TRAINER ?= cpu
DEVICES ?=
NODES ?=
LOGGER ?= wandb
ARGS ?=
METHODS ?=
TEST_WORKERS ?= 2
WANDB ?=

BENCH_OVERRIDES := method=$(METHOD) $(if $(DATA),data=$(DATA)) seeds=[$(SEEDS)] trainer=$(TRAINER) logger=$(LOGGER) \
	$(if $(DEVICES),trainer.devices=$(DEVICES)) $(if $(NODES),trainer.num_nodes=$(NODES)) $(ARGS)

# bench-all: recursive (=) so that its own SEEDS default below applies
BENCH_ALL_OVERRIDES = $(if $(DATA),data=$(DATA)) seeds=[$(SEEDS)] trainer=$(TRAINER) logger=$(LOGGER) \
	$(if $(DEVICES),trainer.devices=$(DEVICES)) $(if $(NODES),trainer.num_nodes=$(NODES)) $(ARGS)

.PHONY: help setup bench bench-all leaderboard test test-all test-ddp lint benchmark clean distclean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'
	@echo "  variables: METHOD=$(METHOD) METHODS= (bench-all: a,b) DATA=$(DATA) (empty: the method's default_data, else synthetic) SEEDS=$(SEEDS) (bench-all: 0,1,2) TRAINER=$(TRAINER) DEVICES= NODES= LOGGER=$(LOGGER) ARGS='extra hydra overrides' WANDB=1 (leaderboard: log it to W&B)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install sbir_bench with its dev tools

bench: $(STAMP) ## train + evaluate METHOD on DATA for SEEDS, then rebuild the leaderboard
	$(BIN)/sbir-bench bench $(BENCH_OVERRIDES)

bench-all: SEEDS = 0,1,2
bench-all: $(STAMP) ## every registered method (METHODS=a,b: those) x DATA's settings x SEEDS (0,1,2), one process per run
	$(BIN)/sbir-bench bench-all $(if $(METHODS),--methods $(METHODS)) $(BENCH_ALL_OVERRIDES)

leaderboard: $(STAMP) ## rebuild leaderboard/leaderboard.{csv,md} from leaderboard/results alone (WANDB=1: log it to W&B)
	$(BIN)/sbir-bench leaderboard $(if $(WANDB),--wandb)

# The default suite runs on TEST_WORKERS processes (pytest-xdist), one thread each: two torch processes
# with several threads each on two cores slow each other down many times over. Tests marked `long` start first;
# idle workers steal the rest (--dist worksteal). The end-to-end quality claims are `slow`: make test-all.
test: $(STAMP) ## the default (fast) test suite, on TEST_WORKERS parallel workers
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

test-all: $(STAMP) ## every test, slow end-to-end runs included
	$(BIN)/python -m pytest -q -m ''

test-ddp: $(STAMP) ## the multi-process CPU DDP tests
	$(BIN)/python -m pytest -q -m ddp

lint: $(STAMP) ## ruff lint + format check
	$(BIN)/ruff check sbir_bench tests benchmarks
	$(BIN)/ruff format --check sbir_bench tests benchmarks

benchmark: $(STAMP) ## run the speed benchmarks (prints ratios against their references)
	$(BIN)/python benchmarks/eval_speed.py
	$(BIN)/python benchmarks/hashing_efficiency.py
	$(BIN)/python benchmarks/feature_throughput.py
	$(BIN)/python benchmarks/cache_check.py

clean: ## remove run outputs and tool caches (keeps .cache/sbir_bench, leaderboard results and .venv)
	rm -rf outputs .pytest_cache .ruff_cache
	$(if $(DISTCLEAN),,@echo "kept .cache/sbir_bench (generated data, backbone weights, features) and $(VENV): make distclean removes them")

distclean: DISTCLEAN := 1
distclean: clean ## clean, then remove .cache/sbir_bench and .venv too (a shared $SBIR_CACHE is left alone)
	rm -rf .cache/sbir_bench $(VENV)
