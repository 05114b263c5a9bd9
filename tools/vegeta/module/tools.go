//go:build tools

// Package tools pins vegeta, the open-loop HTTP load generator that `adnomaly bench online --rate` drives,
// built by ../build.sh. The build tag keeps this file out of normal builds; `go mod tidy` still sees it.
package tools

import (
	_ "github.com/tsenart/vegeta/v12"
)
