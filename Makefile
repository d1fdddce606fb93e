# The toolkit's commands. `make demo` and `make test` are all a new user needs.
GO ?= go

.PHONY: setup test demo vet fixtures bench clean

## setup: install libtorch/OpenBLAS if missing and prepare gotch for them (idempotent).
setup:
	@./scripts/setup.sh

## test: setup, then go vet and the whole test suite (CPU).
test: setup
	$(GO) vet ./...
	$(GO) test ./...

## demo: a short end-to-end run on the embedded default.
demo: setup
	$(GO) run ./cmd/gotchcheck

## fixtures: regenerate the committed test fixtures (needs Debian's python3-torch, python3-pil, python3-numpy).
fixtures:
	@./scripts/fixtures.sh

## clean: remove the prepared gotch copy and go.work (the next setup rebuilds them).
clean:
	rm -rf .gotch go.work go.work.sum
