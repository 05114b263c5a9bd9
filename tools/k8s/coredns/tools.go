//go:build tools

// Package tools pins the command built by ../node-build.sh.
// The build tag keeps this file out of normal builds; `go mod tidy` still sees the imports.
package tools

import _ "github.com/coredns/coredns"
