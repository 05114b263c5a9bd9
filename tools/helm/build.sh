#!/usr/bin/env bash
# Build a pinned, cached helm from its Go module (no release downloads).
#
#   tools/helm/build.sh            build if missing (exits immediately when already built)
#   tools/helm/build.sh --force    rebuild even if the binary is there
#   tools/helm/build.sh --update   regenerate go.mod/go.sum from the pin below, then build
#   tools/helm/build.sh --print-bin  print the bin directory and exit
#
# Output: ${ADNOMALY_CACHE:-~/.cache/adnomaly}/helm/<HELM_VERSION>/bin/helm
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Pin: the single place where the version is chosen; go.mod is generated from it by `--update`.
HELM_VERSION=v3.22.0   # helm.sh/helm/v3
GO_LANG_VERSION=1.26.0
# ---------------------------------------------------------------------------------------------

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/gobuild.sh
source "$HERE/../lib/gobuild.sh"
OUT="$CACHE_ROOT/helm/$HELM_VERSION"
BIN="$OUT/bin"
STAMP="helm=$HELM_VERSION"

present() { [[ -x "$BIN/helm" && -f "$BIN/.versions" && "$(cat "$BIN/.versions")" == "$STAMP" ]]; }

gobuild_args "$@"
gobuild_begin helm

if [[ $UPDATE -eq 1 ]]; then
  log "regenerating go.mod for helm.sh/helm/v3 $HELM_VERSION"
  rm -f "$HERE/go.mod" "$HERE/go.sum"
  (cd "$HERE" && GOFLAGS=-mod=mod go mod init adnomaly/tools/helm >/dev/null 2>&1)
  (cd "$HERE" && go mod edit -go="$GO_LANG_VERSION" -require="helm.sh/helm/v3@$HELM_VERSION")
  (cd "$HERE" && GOFLAGS=-mod=mod go mod tidy)
fi

if ! grep -Eq "^[[:space:]]*(require )?helm\.sh/helm/v3 ${HELM_VERSION//./\\.}( |$)" "$HERE/go.mod" 2>/dev/null; then
  echo "tools/helm/go.mod does not pin helm.sh/helm/v3 $HELM_VERSION; run: tools/helm/build.sh --update" >&2
  exit 1
fi

TMP="$(mktemp -d "$OUT/bin.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
start=$SECONDS
log "building helm ($HELM_VERSION)"
X="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
(cd "$HERE" && go build -ldflags="-s -w $X" -o "$TMP/helm" helm.sh/helm/v3/cmd/helm)
mkdir -p "$BIN"
mv -f "$TMP/helm" "$BIN/helm"
echo "$STAMP" > "$BIN/.versions"
log "built in $((SECONDS - start))s into $BIN: helm $(du -h "$BIN/helm" | cut -f1)"
