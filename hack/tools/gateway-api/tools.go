//go:build tools

// Package tools keeps the conformance suite's packages in go.mod and go.sum:
// hack/build-cluster-bins.sh compiles their tests with `go test -c`, which
// `go mod tidy` would not otherwise account for.
package tools

import _ "sigs.k8s.io/gateway-api/conformance"
