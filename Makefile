GO      ?= go
BIN     := bin
FUZZTIME ?= 20s
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.buildVersion=$(VERSION)

.PHONY: all build run zosconnect test fuzz check bench bench-go clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/attlsd ./cmd/attlsd
	$(GO) build -trimpath -o $(BIN)/demo-backend ./examples/backend

# The demo: dev certificates on first use, the demo backend, attlsd.
run: build
	./examples/run-demo.sh

# The z/OS Connect topology on one machine: two attlsd, AT-TLS both ways,
# one call from a CICS stand-in, each hop printed (examples/zosconnect).
zosconnect: build
	GO='$(GO)' ./examples/zosconnect/run.sh

# Every test, under the race detector, then the fuzz targets. End-to-end
# tests build the binary and drive it with curl, openssl, Python,
# HAProxy/nginx, sslscan and testssl, which install-deps.sh installs when
# missing (as root) or reports.
test:
	./test/install-deps.sh
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(MAKE) fuzz

# Each fuzz target for FUZZTIME (go test fuzzes one target at a time). An
# input that fails is written to the package's testdata/fuzz/<target>/;
# committed with its fix, it runs with the ordinary tests from then on.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./policy
	$(GO) test -run '^$$' -fuzz '^FuzzHeader$$' -fuzztime $(FUZZTIME) ./proxy

# attlsd, stunnel, HAProxy and hitch side by side (test/bench/run.sh);
# as root it installs the peers. Under ten minutes on two cores.
bench:
	GO='$(GO)' ./test/bench/run.sh

# Go benchmarks of the data path.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./proxy

check: build
	$(BIN)/attlsd check examples/dev.hcl

clean:
	rm -rf $(BIN)
