# The two commands: `make reproduce` (the whole study, tracked, with a report) and `make test`.
# Both set themselves up: a virtual environment in .venv with every dependency.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel of torch 2.13.0 installs here without a multi-GB CUDA download; elsewhere,
# `make TORCH_SPEC=torch` (or a CUDA build) works too: the code needs torch >= 2.4.
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup test test-fast test-bench reproduce report beyond claims bench bench-e2e bench-sweep lint clean-results

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# Two pytest-xdist workers (one torch thread each), a test file per worker at a time: the suite's
# subprocesses, servers and trainings overlap on the 2 cores. Benchmarks' --quick smoke runs are
# `make test-bench` (the benchmarks themselves are `make bench`).
XDIST := -n 2 --dist loadfile

test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) -m "not bench" --durations=25 $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) -m "not slow and not bench" $(PYTEST_ARGS)

test-bench: $(STAMP)
	$(BIN)/python -m pytest -m bench $(PYTEST_ARGS)

reproduce: $(STAMP)
	$(BIN)/harness data synth
	$(BIN)/harness run
	$(BIN)/harness report

report: $(STAMP)
	$(BIN)/harness report

# Beyond the study (beyond.yaml): the ablation ladder from the study's best model to the modern
# recipe on FER2013, then reports/beyond.html. FER2013 is not shipped: FER2013=PATH names Kaggle's
# fer2013.csv, its folder, or the image-folder form's train/ folder. BEYOND=NAMES runs only those
# experiments (e.g. BEYOND=modern_cpu); PROFILE=gpu trains every rung at full length on a GPU.
FER2013 ?= ../shared/data/fer2013/train
BEYOND  ?= study_best ladder_augment ladder_batchnorm ladder_schedule ladder_smoothing ladder_tta ladder_natural ladder_native ladder_budget modern_cpu
beyond: $(STAMP)
	$(BIN)/harness run --config beyond.yaml --data fer2013:$(FER2013) $(if $(PROFILE),--profile $(PROFILE)) $(BEYOND)
	$(BIN)/harness report --config beyond.yaml $(if $(PROFILE),--profile $(PROFILE)) --out reports/beyond.html
	$(BIN)/harness report --config beyond.yaml $(if $(PROFILE),--profile $(PROFILE)) --format markdown --out docs/results/fer2013.md

# The study's claims on real faces: the six experiments the claims compare, on FER2013, 3 seeds
# each (~1 PFLOP of training, counted), then their verdicts rendered to docs/results/.
CLAIMS ?= cnn_baseline cnn_residual cnn_residual_balanced cnn_baseline_balanced resnext resnext_balanced
claims: $(STAMP)
	$(BIN)/harness run --profile fer2013 --data fer2013:$(FER2013) $(CLAIMS)
	$(BIN)/harness report --profile fer2013 --format markdown --out docs/results/fer2013-claims.md
	$(BIN)/harness report --profile fer2013 --out reports/claims.html

# Benchmarks (not part of `make test`): ratios measured side by side in one run → reports/bench.json,
# then one table of every figure against its target. About 8 minutes on 2 quiet cores.
# BENCH_E2E=1 also times `make reproduce` phase by phase (~13 min more): see bench/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python bench/preprocess.py
	$(BIN)/python bench/training.py
	$(BIN)/python bench/deploy.py
	$(BIN)/python bench/startup.py
	@if [ -n "$(BENCH_E2E)" ]; then $(BIN)/python bench/e2e.py; fi
	$(BIN)/python bench/summary.py
	$(BIN)/python bench/summary.py --markdown bench/RESULTS.md

# `make reproduce` in a fresh temporary project, split by phase (~13 min on 2 cores).
bench-e2e: $(STAMP)
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/summary.py
	$(BIN)/python bench/summary.py --markdown bench/RESULTS.md

# The same sweep with and without its pruner (~25 min on 2 cores): apart from `make bench`.
bench-sweep: $(STAMP)
	$(BIN)/python bench/sweep_pruning.py
	$(BIN)/python bench/summary.py

# ruff, then the import contract of pyproject.toml (the pipeline's layers: no import cycle).
lint: $(STAMP)
	$(BIN)/ruff check harness tests bench
	$(BIN)/lint-imports

# Removes tracked results (mlflow.db, artifacts, Optuna studies, report); keeps data and the preprocessing cache.
clean-results:
	rm -rf mlflow.db mlartifacts optuna.journal reports/index.html
