# Portcullis: the two commands are `make demo` and `make test`.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: help test lint fmt crds generate check-generated deps demo bench bench-control-plane bench-proxy cluster-bins cluster-up cluster-down conformance

help: ## List targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

deps: ## Install what this machine lacks (Debian packages, Rust components).
	@hack/deps.sh

test: deps ## Every test: formatting, lints, generated files, unit, property and e2e tests.
	hack/test.sh

lint: deps ## cargo fmt --check, no import cycles between modules, clippy with warnings as errors.
	$(CARGO) fmt --all -- --check
	hack/check-module-cycles.py proxy/config gwapi crds operator/core operator proxy e2e
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt: ## Format the code.
	$(CARGO) fmt --all

crds: ## Regenerate crds/*.yaml from the Rust types.
	$(CARGO) run --quiet --locked -p crds --bin crdgen

generate: crds ## Regenerate everything generated: CRDs, Gateway API types.
	hack/gen-gateway-api.sh

demo: ## Local cluster, operator, proxy, examples/, and traffic through the Gateway.
	hack/demo.sh

bench: ## Criterion micro-benchmarks (route matching at 10, 1,000 and 10,000 routes).
	$(CARGO) bench --locked -p proxy --bench routing

bench-control-plane: ## Control plane at scale: routes applied, propagated, edited and endpoints scaled under load (release builds, local cluster).
	hack/bench-control-plane.sh

bench-proxy: ## Load test: this proxy beside nginx, haproxy and Envoy, same origin, same pinning.
	hack/bench-proxy.sh

cluster-bins: ## Build etcd, Kubernetes and the suite's backends from Go modules (cached); `make conformance` adds the suite.
	hack/build-cluster-bins.sh

cluster-up: ## Start the local Kubernetes: control plane from Go modules, Pods as processes.
	$(CARGO) build --locked -p e2e --bin portcullis-node-agent
	hack/cluster-up.sh

cluster-down: ## Stop the local Kubernetes and remove its processes, namespaces and interfaces.
	hack/cluster-down.sh

conformance: ## Gateway API v1.6.1 conformance, every profile, against the local cluster (GATEWAY_API_CHANNEL=experimental for that channel).
	GATEWAY_API_CHANNEL=standard hack/cluster-up.sh
	hack/conformance.sh

check-generated: ## Fail when generated Gateway API types drift from the generator.
	hack/check-generated.sh

# Install paths: deploy/, the OLM bundle and catalog, images.
.PHONY: manifests bundle tools-olm validate-bundle images

manifests: ## Regenerate deploy/, bundle/ and olm/ from the RBAC table, the CRD and the install model.
	$(CARGO) run --quiet --locked -p operator --bin portcullis-manifests

bundle: manifests ## Regenerate the OLM bundle and catalog (one generator writes them with deploy/).

tools-olm: ## Build operator-sdk and opm from Go modules (cached).
	hack/build-olm-tools.sh

validate-bundle: tools-olm ## operator-sdk bundle validate (operatorframework suite) and opm validate olm/catalog.
	hack/validate-bundle.sh

images: ## Build the operator, proxy, bundle and catalog images with podman, docker or buildah, if any.
	hack/images.sh
