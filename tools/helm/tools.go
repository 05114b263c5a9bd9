//go:build tools

// Package tools pins the helm command built by ./build.sh.
// The build tag keeps this file out of normal builds; `go mod tidy` still sees the import.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
