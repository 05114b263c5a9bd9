//go:build tools

// Package tools pins the KEDA commands built by ../build.sh (the operator and its metrics adapter).
// The build tag keeps this file out of normal builds; `go mod tidy` still sees the imports.
package tools

import (
	_ "github.com/kedacore/keda/v2/cmd/adapter"
	_ "github.com/kedacore/keda/v2/cmd/operator"
)
