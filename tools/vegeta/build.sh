#!/usr/bin/env bash
# Build a pinned, cached vegeta (an open-loop, constant-rate HTTP load generator written in Go, as wrk2 is
# in C) from its Go module as served by the Go module proxy (no release downloads). `adnomaly bench online
# --rate R` drives it: a load generator in Python on the same two cores added its own stalls to the API's
# latency (see bench/README.md).
#
#   tools/vegeta/build.sh            build if missing (exits immediately when already built)
#   tools/vegeta/build.sh --force    rebuild even if the binary is there
#   tools/vegeta/build.sh --update   regenerate module/go.mod and go.sum from the pin below, then build
#   tools/vegeta/build.sh --print-bin  print the bin directory and exit
#
# Output: ${ADNOMALY_CACHE:-~/.cache/adnomaly}/vegeta/<VEGETA_VERSION>/bin/vegeta
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Pins: the single place where versions are chosen. module/go.mod is generated from these by `--update`;
# a normal build refuses to run if it disagrees.
VEGETA_VERSION=v12.13.0
GO_LANG_VERSION=1.26.0
# ---------------------------------------------------------------------------------------------

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/gobuild.sh
source "$HERE/../lib/gobuild.sh"
gobuild_single vegeta "$VEGETA_VERSION" "$@"
gobuild_pin_module "$HERE/module" github.com/tsenart/vegeta/v12 "$VEGETA_VERSION" "$GO_LANG_VERSION"
# vegeta's own Makefile stamps its version into main.Version.
gobuild_install vegeta "$HERE/module" github.com/tsenart/vegeta/v12 -ldflags="-s -w -X main.Version=$VEGETA_VERSION"
