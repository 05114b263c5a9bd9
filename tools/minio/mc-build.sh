#!/usr/bin/env bash
# Build a pinned, cached, static MinIO client (mc) from its Go module as served by the Go module proxy
# (no Docker, no release downloads). CGO_ENABLED=0 (tools/lib/gobuild.sh), so it runs in a FROM scratch
# image: the e2e suite runs the operator's bucket Job with it
# (`mc --config-dir /tmp/mc mb --ignore-existing minio/<bucket>`, alias from MC_HOST_minio).
#
#   tools/minio/mc-build.sh            build if missing (exits immediately when already built)
#   tools/minio/mc-build.sh --force    rebuild even if the binary is there
#   tools/minio/mc-build.sh --update   regenerate client/go.mod and go.sum from the pin below, then build
#   tools/minio/mc-build.sh --print-bin  print the bin directory and exit
#
# Output: ${ADNOMALY_CACHE:-~/.cache/adnomaly}/mc/<MC_VERSION>/bin/mc
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Pins: the single place where versions are chosen. client/go.mod is generated from these by
# `--update`; a normal build refuses to run if it disagrees.
# mc tags its releases RELEASE.<timestamp> like MinIO, which are not semantic versions, so the module
# proxy serves it only by pseudo-version. This commit (2025-11-06) is newer than the mc that the pinned
# server itself requires (v0.0.0-20250313080218-cf909e1063a9, also the proxy's @latest).
MC_VERSION=v0.0.0-20251106162529-77f82e18b540
MC_COMMIT=77f82e18b540
MC_COMMIT_TIME=2025-11-06T16:25:29Z
GO_LANG_VERSION=1.26.0
# ---------------------------------------------------------------------------------------------

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/gobuild.sh
source "$HERE/../lib/gobuild.sh"
gobuild_single mc "$MC_VERSION" "$@"
gobuild_pin_module "$HERE/client" github.com/minio/mc "$MC_VERSION" "$GO_LANG_VERSION"

# What mc's own buildscripts/gen-ldflags.go stamps, so `mc --version` names the pinned commit.
LDFLAGS="-s -w"
LDFLAGS+=" -X github.com/minio/mc/cmd.Version=$MC_COMMIT_TIME"
LDFLAGS+=" -X github.com/minio/mc/cmd.ReleaseTag=DEVELOPMENT.${MC_COMMIT_TIME//:/-}"
LDFLAGS+=" -X github.com/minio/mc/cmd.CommitID=$MC_COMMIT"
LDFLAGS+=" -X github.com/minio/mc/cmd.ShortCommitID=$MC_COMMIT"
LDFLAGS+=" -X github.com/minio/mc/cmd.CopyrightYear=${MC_COMMIT_TIME%%-*}"

# `-tags kqueue` as in mc's Makefile.
gobuild_install mc "$HERE/client" github.com/minio/mc -tags kqueue -ldflags="$LDFLAGS"
