# Arrakis: `make demo` runs the local stack, `make test` runs every test. `make help` lists the rest.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Build outputs live outside the checkout so a fresh clone on a warm machine starts in seconds.
ARRAKIS_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/arrakis
export ARRAKIS_CACHE
# One target directory per checkout: cargo records source paths relative to each package, so two
# checkouts sharing a target directory can run each other's stale binaries.
CHECKOUT_KEY := $(shell printf '%s' '$(CURDIR)' | sha256sum | cut -c1-12)
export CARGO_TARGET_DIR ?= $(ARRAKIS_CACHE)/target/$(CHECKOUT_KEY)
CARGO ?= cargo

.PHONY: help test lint unit crds crds-check e2e bench bench-gateway bench-worker demo demo-down tools cluster-up cluster-down nats-up nats-down

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

test: ## Run everything: lint, CRD drift, unit tests, end-to-end suites
	@log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	$(MAKE) --no-print-directory lint crds-check unit e2e 2>&1 | tee "$$log"; \
	awk '/^test result:/ { passed += $$4; failed += $$6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$$log"

lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

unit: ## Unit tests: pure logic, no servers (every crate's lib and bins)
	$(CARGO) test --locked --workspace --lib --bins

crds: ## Regenerate crds/*.yaml from the Rust API types
	$(CARGO) run --locked -q -p arrakis-operator -- crd --out-dir crds

crds-check: ## Fail if crds/ differs from what the Rust API types generate
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(CARGO) run --locked -q -p arrakis-operator -- crd --out-dir "$$tmp"; \
	if ! diff -ru --exclude=samples crds "$$tmp"; then \
	  echo "crds/ is out of date with the API types: run 'make crds' and commit the result" >&2; exit 1; \
	fi; echo "crds/ matches the API types"

e2e: ## Integration and end-to-end suites on real servers (E2E_KUBECONFIG=... for another cluster)
	e2e/scripts/run-e2e.sh

bench: ## Every benchmark on real servers, release builds
	e2e/scripts/bench.sh all

bench-gateway: ## The gateway's benchmarks (BENCH_ARGS="--scenario throughput --runs 3" to change)
	e2e/scripts/bench.sh gateway $(BENCH_ARGS)

bench-worker: ## The worker against nats.js, nats-py and nats bench (BENCH_ARGS="--runs 3 --messages 50000")
	e2e/scripts/bench.sh worker $(BENCH_ARGS)

demo: ## Bring up the local cluster and NATS, install the CRDs, apply the samples
	e2e/scripts/demo.sh

demo-down: ## Stop what `make demo` started
	e2e/scripts/operator.sh stop
	$(MAKE) nats-down cluster-down

tools: ## Build the control plane, KWOK and NATS binaries into the cache (idempotent)
	e2e/scripts/build-tools.sh all

cluster-up: ## Start or reuse the local control plane; prints its kubeconfig path
	e2e/cluster/up.sh

cluster-down: ## Delete the local control plane
	e2e/cluster/down.sh

nats-up: ## Start a nats-server with JetStream on 127.0.0.1:4222
	e2e/scripts/nats.sh start

nats-down: ## Stop that nats-server
	e2e/scripts/nats.sh stop
