//go:build tools

// Package tools keeps CoreDNS in go.mod.
package tools

import _ "github.com/coredns/coredns/coremain"
