# The toolkit's commands. `make demo` and `make test` are all a new user needs.
GO ?= go

# TORCH2: the libtorch 2.x version of setup-torch2/test-torch2 (PyPI's torch wheel).
TORCH2 ?= 2.11.0
TORCH2_WORK = $(CURDIR)/.gotch/torch-$(TORCH2)/go.work

.PHONY: setup test demo fixtures python-deps clean gpu-bundle setup-torch2 test-torch2 python-deps-torch2

## setup: install libtorch/OpenBLAS if missing and prepare gotch for them (idempotent).
setup:
	@./scripts/setup.sh

## test: setup, then go vet and the whole test suite (CPU).
test: setup
	$(GO) vet ./...
	$(GO) test ./...

## setup-torch2: fetch libtorch $(TORCH2) (CPU) from PyPI's torch wheel into .libtorch/ and prepare
## gotch for it in .gotch/torch-$(TORCH2)/, beside the default setup (idempotent).
setup-torch2:
	@./scripts/setup.sh torch2 $(TORCH2)

## test-torch2: go vet and the whole test suite against libtorch $(TORCH2) (CI runs it after `make test`).
test-torch2: setup-torch2
	GOWORK=$(TORCH2_WORK) $(GO) vet ./...
	GOWORK=$(TORCH2_WORK) $(GO) test ./...

## python-deps-torch2: a virtual environment in .libtorch/ with PyTorch $(TORCH2) from PyPI and torchvision,
## for the benchmarks' PyTorch 2.x side (PYTHON=.libtorch/venv-torch-$(TORCH2)/bin/python).
python-deps-torch2:
	@./scripts/setup.sh python-torch2 $(TORCH2)

## demo: every method on a synthetic dataset with a small random CLIP (configs/demo.toml).
demo: setup
	$(GO) run ./cmd/train

## python-deps: install Debian's Python packages used by the fixture generators and bench/ (not by the toolkit).
python-deps:
	@./scripts/setup.sh python

## fixtures: regenerate the committed test fixtures with PyTorch/PIL references.
fixtures: python-deps
	@./scripts/fixtures.sh

## slurm-test: run a small sweep as a Slurm job array on a single-node cluster started here
## (installs slurm-wlm and munge if missing; needs root; not part of `make test`).
slurm-test: setup
	@./scripts/slurm-test.sh

## clean: remove the prepared gotch copies, go.work and the fetched libtorch (the next setup rebuilds them).
clean:
	rm -rf .gotch go.work go.work.sum .libtorch

## gpu-bundle: build .carry/ (Go toolchain + module cache) for scripts/gpu-check.sh on a GPU machine without Go.
gpu-bundle:
	@./scripts/gpu-bundle.sh
