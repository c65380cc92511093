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

# The suites (benchmarks/suites.py) write RESULTS/<suite>/, by default runs/<suite>/, which git
# ignores (results/ holds the committed reference suites): finished runs are skipped, interrupted
# ones resume. `make report` writes their reports again.
.PHONY: smoke bench bench-perturb bench-cifar report
RESULTS ?= runs
smoke: setup
	$(BIN)/python -m benchmarks.harness smoke --results $(RESULTS)

bench: setup
	$(BIN)/python -m benchmarks.harness quick --results $(RESULTS)

bench-perturb: setup
	$(BIN)/python -m benchmarks.harness perturb --results $(RESULTS)

# CIFAR-10 on a GPU machine (GPUS=N for several: torchrun, DistributedDataParallel);
# the archive is downloaded, its hash checked, on first use. SUITE=short: the suite
# cifar-short (at most 8 GPU-hours on one H100-class GPU) instead of the paper-scale one.
GPUS ?= 1
SUITE ?=
bench-cifar: setup
	$(BIN)/torchrun --standalone --nproc_per_node=$(GPUS) -m benchmarks.harness cifar$(if $(SUITE),-$(SUITE)) --results $(RESULTS)

report: setup
	$(BIN)/spdbench report --results $(RESULTS)

# The GPU self-check (benchmarks/gpu_check.py): every process trained, sampled and compared with
# diffusers' example, and torchrun over every GPU, in at most 8 minutes on one GPU, on random
# images (the check downloads nothing; `setup` installs the venv from the package registries);
# writes results/perf/gpu-<device>.md. DEVICE=cpu: the same at toy sizes.
.PHONY: gpu-check
DEVICE ?=
gpu-check: setup
	$(BIN)/python -m benchmarks.gpu_check $(if $(DEVICE),--device $(DEVICE))
