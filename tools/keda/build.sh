#!/usr/bin/env bash
# Build a pinned, cached KEDA (the operator and its metrics adapter) from its Go module as served by the
# Go module proxy (no images, no release downloads), for the e2e test that runs KEDA for real against the
# real node (tests/e2e/test_keda.py). KEDA's own go.mod has a `replace` line, which a dependency's go.mod
# cannot pass on, so module/ is a wrapper module that repeats it.
#
#   tools/keda/build.sh            build if missing (exits immediately when already built)
#   tools/keda/build.sh --force    rebuild even if the binaries are there
#   tools/keda/build.sh --update   regenerate module/go.mod and go.sum from the pins below, then build
#   tools/keda/build.sh --print-bin  print the bin directory and exit
#
# Output: ${ADNOMALY_CACHE:-~/.cache/adnomaly}/keda/<KEDA_VERSION>/bin/{keda-operator,keda-adapter} and, beside
# bin/, crds/: the CRDs of that same KEDA version (from its module, which ships them under config/crd/bases).
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Pins: the single place where the version is chosen; module/go.mod is generated from them by `--update`
# and a normal build refuses to run if it disagrees. v2.21.1 needs Go >= 1.27.4; v2.21.0 builds with the
# machine's Go (its go.mod says go 1.26.0).
KEDA_VERSION=v2.21.0
# KEDA's go.mod: replace github.com/nexus-rpc/nexus-proto-annotations v0.1.0 => this pseudo-version.
NEXUS_ANNOTATIONS_REPLACE=v0.1.1-0.20260629224316-835bd8d49cb4
GO_LANG_VERSION=1.26.0
# ---------------------------------------------------------------------------------------------

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/gobuild.sh
source "$HERE/../lib/gobuild.sh"
OUT="$CACHE_ROOT/keda/$KEDA_VERSION"
BIN="$OUT/bin"
CRDS="$OUT/crds"
STAMP="keda=$KEDA_VERSION"
MODULE=github.com/kedacore/keda/v2

present() {
  [[ -x "$BIN/keda-operator" && -x "$BIN/keda-adapter" && -d "$CRDS" ]] \
    && [[ -f "$BIN/.versions" && "$(cat "$BIN/.versions")" == "$STAMP" ]]
}

gobuild_args "$@"
gobuild_begin keda

DIR="$HERE/module"
gobuild_pin_module "$DIR" "$MODULE" "$KEDA_VERSION" "$GO_LANG_VERSION" \
  -replace="github.com/nexus-rpc/nexus-proto-annotations@v0.1.0=github.com/nexus-rpc/nexus-proto-annotations@$NEXUS_ANNOTATIONS_REPLACE"

TMP="$(mktemp -d "$OUT/bin.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
start=$SECONDS
LDFLAGS="-s -w -X $MODULE/version.Version=${KEDA_VERSION#v} -X $MODULE/version.GitCommit=$KEDA_VERSION"
for cmd in operator adapter; do
  t0=$SECONDS
  log "building keda-$cmd ($KEDA_VERSION)"
  (cd "$DIR" && go build -ldflags="$LDFLAGS" -o "$TMP/keda-$cmd" "$MODULE/cmd/$cmd")
  log "  keda-$cmd: $((SECONDS - t0))s"
done

# The CRDs of the same version, from the module (the operator watches all six kinds, not only the two that
# the operator renders and that shared/third_party/crds/ carries for the dry-runs).
SRC="$(cd "$DIR" && go list -m -f '{{.Dir}}' "$MODULE")/config/crd/bases"
rm -rf "$TMP/crds" && mkdir -p "$TMP/crds"
cp "$SRC"/*.yaml "$TMP/crds/"
chmod -R u+w "$TMP/crds"

mkdir -p "$BIN"
mv -f "$TMP/keda-operator" "$TMP/keda-adapter" "$BIN/"
rm -rf "$CRDS" && mv "$TMP/crds" "$CRDS"
echo "$STAMP" > "$BIN/.versions"
log "built in $((SECONDS - start))s into $BIN: $(du -ch "$BIN"/keda-* | tail -1 | cut -f1)"
