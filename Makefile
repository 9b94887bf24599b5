# weft: the two commands a new user runs (as root, on Debian):
#   make demo   build weft and run `weft demo`, a small mesh in network namespaces
#   make test   every test: unit tests (with -race where concurrency matters) and the end-to-end suite
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# Packages whose tests run under the race detector (everything but the end-to-end suite, which starts
# real binaries).
UNIT := ./internal/... ./cmd/... .

FUZZTIME ?= 20s

.PHONY: all deps build demo test unit e2e lint fuzz clean bench

all: build

deps:
	@./scripts/install-deps.sh

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/weft ./cmd/weft

demo: deps build
	./bin/weft demo

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 15m $(UNIT)

e2e:
	$(GO) test -count=1 -timeout 30m ./e2e/...

test: deps lint unit e2e

# Short fuzzing session over every fuzz target (the seed corpora also run in `make test`).
fuzz:
	@for pkg in $$($(GO) list ./internal/... ./cmd/...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep ^Fuzz); do \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin

# Benchmark weft against the raw underlay in network namespaces (root; about 15 minutes, BENCH_QUICK=1 for
# a short run). Not part of `make test`. Writes bench/results/latest.md and bench/results/throughput.png.
bench: deps build
	cd bench && $(GO) build -o bin/ ./cmd/... && ./bin/weftbench -weft ../bin/weft -out results
