//go:build tools

// Package tools pins the MinIO client command (mc) built by ../mc-build.sh.
// The build tag keeps this file out of normal builds; `go mod tidy` still sees the import.
package tools

import (
	_ "github.com/minio/mc"
)
