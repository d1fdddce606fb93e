# The toolkit's commands. `make demo` and `make test` are all a new user needs.
GO ?= go

.PHONY: setup test demo fixtures python-deps clean gpu-bundle

## setup: install libtorch/OpenBLAS if missing and prepare gotch for them (idempotent).
setup:
	@./scripts/setup.sh

## test: setup, then go vet and the whole test suite (CPU).
test: setup
	$(GO) vet ./...
	$(GO) test ./...

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

## clean: remove the prepared gotch copy and go.work (the next setup rebuilds them).
clean:
	rm -rf .gotch go.work go.work.sum

## gpu-bundle: build .carry/ (Go toolchain + module cache) for scripts/gpu-check.sh on a GPU machine without Go.
gpu-bundle:
	@./scripts/gpu-bundle.sh
