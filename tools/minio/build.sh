#!/usr/bin/env bash
# Build a pinned, cached MinIO server (S3-compatible object store) for the data lake, from its Go
# module as served by the Go module proxy (no Docker, no release downloads).
#
#   tools/minio/build.sh            build if missing (exits immediately when already built)
#   tools/minio/build.sh --force    rebuild even if the binary is there
#   tools/minio/build.sh --update   regenerate server/go.mod and go.sum from the pin below, then build
#   tools/minio/build.sh --print-bin  print the bin directory and exit
#
# Output: ${ADNOMALY_CACHE:-~/.cache/adnomaly}/minio/<MINIO_VERSION>/bin/minio
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Pins: the single place where versions are chosen. server/go.mod is generated from these by
# `--update`; a normal build refuses to run if it disagrees.
# MinIO tags its releases RELEASE.<timestamp>, which are not semantic versions, so the module proxy
# serves it only by pseudo-version: this one is the last commit of the upstream repository.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
MINIO_COMMIT=7aac2a2c5b7c
MINIO_COMMIT_TIME=2026-02-12T20:18:48Z
GO_LANG_VERSION=1.26.0
# ---------------------------------------------------------------------------------------------

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/gobuild.sh
source "$HERE/../lib/gobuild.sh"
gobuild_single minio "$MINIO_VERSION" "$@"

gobuild_pin_module "$HERE/server" github.com/minio/minio "$MINIO_VERSION" "$GO_LANG_VERSION"

# What MinIO's own buildscripts/gen-ldflags.go stamps, so `minio --version` names the pinned commit.
RELEASE_TAG="DEVELOPMENT.${MINIO_COMMIT_TIME//:/-}"
LDFLAGS="-s -w"
LDFLAGS+=" -X github.com/minio/minio/cmd.Version=$MINIO_COMMIT_TIME"
LDFLAGS+=" -X github.com/minio/minio/cmd.ReleaseTag=$RELEASE_TAG"
LDFLAGS+=" -X github.com/minio/minio/cmd.CommitID=$MINIO_COMMIT"
LDFLAGS+=" -X github.com/minio/minio/cmd.ShortCommitID=$MINIO_COMMIT"
LDFLAGS+=" -X github.com/minio/minio/cmd.CopyrightYear=${MINIO_COMMIT_TIME%%-*}"

# `-tags kqueue` as in MinIO's Makefile.
gobuild_install minio "$HERE/server" github.com/minio/minio -tags kqueue -ldflags="$LDFLAGS"
