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
gobuild_single helm "$HELM_VERSION" "$@"

gobuild_pin_module "$HERE" helm.sh/helm/v3 "$HELM_VERSION" "$GO_LANG_VERSION"
X="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
gobuild_install helm "$HERE" helm.sh/helm/v3/cmd/helm -ldflags="-s -w $X"
