# redhaven: build, test, benchmark, demo. `make help` lists the targets.
SHELL := /bin/bash
# Versions come from tags vX.Y.Z (packaging/version.sh); the build date is
# the commit's, so a build is reproducible.
VERSION ?= $(shell ./packaging/version.sh)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell git log -1 --format=%cI 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(BUILD_DATE)
GOFLAGS_BUILD := -trimpath -ldflags "$(LDFLAGS)"
BIN := dist/redhaven
GO_TEST_FLAGS ?= -race -timeout 25m

.PHONY: help build test-deps test test-short vet deps-check bench bench-tls bench-flood bench-idle bench-instructions bench-failover bench-services bench-cluster e2e chaos demo clean

include packaging/package.mk

help: ## list targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

build: ## build the static binary into dist/redhaven
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o $(BIN) ./cmd/redhaven

vet: ## go vet and gofmt check
	go vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

deps-check: ## leaves must not import each other or node (see DESIGN.md)
	@./e2e/deps-check.sh

test-deps: ## install the Debian packages the tests need (as root), or name the missing ones and stop
	@./e2e/test-deps.sh

test: test-deps vet deps-check build ## every test: unit, real redis/sentinel, cluster, netns, chromium, packages (seed corpora of fuzz targets included)
	go test $(GO_TEST_FLAGS) ./...
	@echo "== proxy tests again with proxy.multiplex off (1:1 backend connections)"
	PROXY_TEST_MULTIPLEX=0 go test $(GO_TEST_FLAGS) ./proxy

test-short: ## unit tests only
	go test -short ./...

bench: build ## redis-benchmark: direct vs HAProxy vs redhaven (1:1 and multiplexed), interleaved, ratios; then bench-flood
	./e2e/bench/proxy-bench.sh
	./e2e/bench/auth-flood.sh

bench-tls: build ## everything over TLS: redis tls-port direct vs HAProxy (ssl both sides) vs redhaven (proxy.tls + redis.tls), ratios and CPU per request
	./e2e/bench/tls-bench.sh

bench-flood: build ## proxy PING p50/p99 with no flood vs 16 and 1,000 wrong HTTP passwords a second (new ones, one repeated, and a control flood to a sink), ratios, CPU and bcrypt runs per window
	./e2e/bench/auth-flood.sh

bench-idle: build ## memory per idle client connection (10k clients): HAProxy vs redhaven (1:1 and multiplexed)
	./e2e/bench/idle-rss.sh

bench-instructions: build ## proxy CPU per request counted in instructions (valgrind cachegrind): HAProxy vs redhaven 1:1 and multiplexed, ratios; repeatable within ~2%
	./e2e/bench/instructions.sh

bench-failover: build ## kill -9 the master under a 5 ms writer: redhaven vs HAProxy
	./e2e/bench/failover-bench.sh

bench-services: build ## one agent with two services: throughput of both at once vs one alone (same clients in total), ratio; direct Redis as reference (~4 min)
	./e2e/bench/services-bench.sh

bench-cluster: ## cluster figures: leader kill -> new leader, kill -9 master -> all agents route, planned-failover pause
	go test -count=1 -run 'TestClusterFigures' -v ./node/ | grep -E 'figure|ok|FAIL'

e2e: package ## Docker end-to-end failovers (3 nodes from the .deb, VIP, client traffic), figures printed; fails without Docker; includes TestChaosCI (short fixed chaos schedule), make chaos runs TestChaos
	set -o pipefail; REDHAVEN_REQUIRE=docker REDHAVEN_DEB=$$(realpath dist/redhaven_*.deb) go test -tags e2e -count=1 -timeout 60m -skip 'TestChaos$$' -v ./e2e/ 2>&1 | tee dist/e2e.log | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|figures|e2e_test|failover_test|chaos_test'

SEED ?= 1
DURATION ?= 2m
KEYS ?= 4
STACK ?= both
chaos: package ## fault injection under a recorded workload, checked by programs (SEED=1 DURATION=2m KEYS=4 STACK=both|redhaven|classic); report and histories in dist/chaos
	mkdir -p dist/chaos
	set -o pipefail; REDHAVEN_DEB=$$(realpath dist/redhaven_*.deb) CHAOS_OUT=$(CURDIR)/dist/chaos CHAOS_SEED=$(SEED) CHAOS_DURATION=$(DURATION) CHAOS_KEYS=$(KEYS) CHAOS_STACK=$(STACK) \
		go test -tags e2e -count=1 -timeout 120m -run 'TestChaos$$' -v ./e2e/ 2>&1 | tee dist/chaos.log | grep -E '^(=== RUN|--- |ok|FAIL|PASS)|chaos_test|chaos_classic_test|nemesis|schedule|seed|^ *\|'

demo: build ## two services (2 x 3 redis) + 3 sentinels + 3 redhaven on loopback; Ctrl-C stops everything
	./e2e/demo.sh

clean: ## remove build output
	rm -rf dist
