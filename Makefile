GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.buildVersion=$(VERSION)

.PHONY: all build run zosconnect test check bench bench-go clean

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

# Every test, under the race detector. End-to-end tests build the binary
# and drive it with curl, openssl, Python and HAProxy/nginx, which
# install-deps.sh installs when missing (as root) or reports.
test:
	./test/install-deps.sh
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

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
