# spdbench: every command a user needs. `make setup` is idempotent and every target uses it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: setup data test paths samplers show

setup: $(VENV)/.installed data

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

# The embedded default dataset: Debian's Fashion-MNIST package, when we can install it
# (elsewhere the loader downloads the official files and checks their hashes).
data:
	@if [ ! -f $(FMNIST) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; fi

test: setup
	OMP_NUM_THREADS=1 $(BIN)/pytest -n 2

paths: setup
	$(BIN)/spdbench paths

samplers: setup
	$(BIN)/spdbench samplers

show: setup
	$(BIN)/spdbench show --process all

# The suites (benchmarks/suites.py) write runs/<suite>/ (git ignores it; results/ holds the
# committed reference suites), or RESULTS/<suite>/: finished runs are skipped, interrupted ones resume.
.PHONY: smoke bench bench-perturb bench-cifar report
RESULTS ?=
HARNESS_OPTIONS = $(if $(RESULTS),--results $(RESULTS))
smoke: setup
	$(BIN)/python -m benchmarks.harness smoke $(HARNESS_OPTIONS)

bench: setup
	$(BIN)/python -m benchmarks.harness quick $(HARNESS_OPTIONS)

bench-perturb: setup
	$(BIN)/python -m benchmarks.harness perturb $(HARNESS_OPTIONS)

# CIFAR-10 on a GPU machine (GPUS=N for several: torchrun, DistributedDataParallel);
# the archive is downloaded, its hash checked, on first use. SUITE=short: the suite
# cifar-short (at most 8 GPU-hours on one H100-class GPU) instead of the paper-scale one.
GPUS ?= 1
SUITE ?=
bench-cifar: setup
	$(BIN)/torchrun --standalone --nproc_per_node=$(GPUS) -m benchmarks.harness cifar$(if $(SUITE),-$(SUITE)) $(HARNESS_OPTIONS)

report: setup
	$(BIN)/spdbench report

# The GPU self-check (benchmarks/gpu_check.py): every process trained, sampled and compared with
# diffusers' example, and torchrun over every GPU, in at most 8 minutes on one GPU, on random
# images (the check downloads nothing; `setup` installs the venv from the package registries);
# writes results/perf/gpu-<device>.md. DEVICE=cpu: the same at toy sizes.
.PHONY: gpu-check
DEVICE ?=
gpu-check: setup
	$(BIN)/python -m benchmarks.gpu_check $(if $(DEVICE),--device $(DEVICE))
