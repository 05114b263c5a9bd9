#!/usr/bin/env bash
# Build a pinned, cached Kubernetes control plane for tests (no Docker, no release downloads):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok, all compiled
# from Go modules served by the Go module proxy.
#
#   tools/k8s/build.sh            build if missing (exits immediately when already built)
#   tools/k8s/build.sh --force    rebuild even if the binaries are there
#   tools/k8s/build.sh --update   regenerate the wrapper go.mod/go.sum files from the pins in pins.sh, then build
#   tools/k8s/build.sh --print-bin  print the bin directory and exit
#
# Output: ${ADNOMALY_CACHE:-~/.cache/adnomaly}/k8s/<K8S_VERSION>/bin/
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=pins.sh
source "$HERE/pins.sh"  # K8S_VERSION, ETCD_VERSION, KWOK_VERSION, GO_LANG_VERSION (shared with node-build.sh)
# shellcheck source=../lib/gobuild.sh
source "$HERE/../lib/gobuild.sh"
OUT="$CACHE_ROOT/k8s/$K8S_VERSION"
BIN="$OUT/bin"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)
STAMP="k8s=$K8S_VERSION etcd=$ETCD_VERSION kwok=$KWOK_VERSION"
# kwok needs Stage objects to act like a kubelet; these are the ones kwokctl uses by default
# (node-initialize, node-heartbeat-with-lease, pod-ready/complete/delete), copied from the same module.
KWOK_STAGES=(
  kustomize/stage/node/fast/node-initialize.yaml
  kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  kustomize/stage/pod/fast/pod-ready.yaml
  kustomize/stage/pod/fast/pod-complete.yaml
  kustomize/stage/pod/fast/pod-delete.yaml
)
STAGING_VERSION="v0.${K8S_VERSION#v1.}"

present() {
  local b
  for b in "${BINARIES[@]}"; do
    [[ -x "$BIN/$b" ]] || return 1
  done
  [[ -f "$BIN/kwok-stages.yaml" ]] || return 1
  [[ -f "$BIN/.versions" && "$(cat "$BIN/.versions")" == "$STAMP" ]]
}

gobuild_args "$@"
gobuild_begin "k8s control-plane binaries"

# --- go.mod generation (only with --update) --------------------------------------------------
update_kube_module() {
  local dir="$HERE/kube" gomod json line mod
  log "regenerating kube/go.mod for k8s.io/kubernetes $K8S_VERSION (staging => $STAGING_VERSION)"
  rm -f "$dir/go.mod" "$dir/go.sum"
  (cd "$dir" && GOFLAGS=-mod=mod go mod init adnomaly/tools/k8s/kube >/dev/null 2>&1)
  (cd "$dir" && go mod edit -go="$GO_LANG_VERSION" -godebug=default=go1.26 \
      -require="k8s.io/kubernetes@$K8S_VERSION")
  # k8s.io/kubernetes replaces its staging modules with ./staging/src/...; such replaces do not
  # apply to a dependency, so map each one to its published twin.
  json="$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" || true)"
  gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
  [[ -n "$gomod" && -f "$gomod" ]] || {
    echo "cannot download go.mod of k8s.io/kubernetes@$K8S_VERSION:" >&2; echo "$json" >&2; exit 1; }
  while read -r line; do
    mod="${line%% *}"
    # only modules k8s.io/kubernetes actually requires (sample-* staging modules are not published)
    if grep -Eq "^[[:space:]]*${mod//./\\.} v0\.0\.0" "$gomod"; then
      (cd "$dir" && go mod edit -replace="$mod=$mod@$STAGING_VERSION")
    fi
  done < <(grep -E '^[[:space:]]*k8s\.io/[^ ]+ => \./staging/' "$gomod" | sed 's/^[[:space:]]*//')
  (cd "$dir" && GOFLAGS=-mod=mod go mod tidy)
}

update_simple_module() {
  local name="$1" mod="$2" version="$3" dir="$HERE/$1"
  log "regenerating $name/go.mod for $mod $version"
  rm -f "$dir/go.mod" "$dir/go.sum"
  (cd "$dir" && GOFLAGS=-mod=mod go mod init "adnomaly/tools/k8s/$name" >/dev/null 2>&1)
  (cd "$dir" && go mod edit -go="$GO_LANG_VERSION" -require="$mod@$version")
  (cd "$dir" && GOFLAGS=-mod=mod go mod tidy)
}

if [[ $UPDATE -eq 1 ]]; then
  update_kube_module
  update_simple_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
  update_simple_module kwok sigs.k8s.io/kwok "$KWOK_VERSION"
fi

# --- verify go.mod files agree with the pins --------------------------------------------------
check_pin() {
  local dir="$1" mod="$2" version="$3"
  if ! grep -Eq "^[[:space:]]*(require )?${mod//./\\.} ${version//./\\.}( |$)" "$HERE/$dir/go.mod" 2>/dev/null; then
    echo "tools/k8s/$dir/go.mod does not pin $mod $version; run: tools/k8s/build.sh --update" >&2
    exit 1
  fi
}
check_pin kube k8s.io/kubernetes "$K8S_VERSION"
check_pin etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
check_pin kwok sigs.k8s.io/kwok "$KWOK_VERSION"

# --- build ------------------------------------------------------------------------------------
TMP="$(mktemp -d "$OUT/bin.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

MAJOR="${K8S_VERSION#v}"; MAJOR="${MAJOR%%.*}"
MINOR="${K8S_VERSION#v*.}"; MINOR="${MINOR%%.*}"
KUBE_X=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  KUBE_X+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$MAJOR -X $pkg.gitMinor=$MINOR"
  KUBE_X+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

start=$SECONDS
log "building kube-apiserver kube-controller-manager kube-scheduler kubectl ($K8S_VERSION)"
(cd "$HERE/kube" && go build -ldflags="-s -w$KUBE_X" -o "$TMP/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl)

log "building etcd ($ETCD_VERSION)"
(cd "$HERE/etcd" && go build -ldflags="-s -w" -o "$TMP/etcd" go.etcd.io/etcd/server/v3)

log "building kwok ($KWOK_VERSION)"
(cd "$HERE/kwok" && go build -ldflags="-s -w" -o "$TMP/kwok" sigs.k8s.io/kwok/cmd/kwok)
KWOK_DIR="$(cd "$HERE/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
for stage in "${KWOK_STAGES[@]}"; do
  echo "---"
  cat "$KWOK_DIR/$stage"
done > "$TMP/kwok-stages.yaml"

mkdir -p "$BIN"
for b in "${BINARIES[@]}" kwok-stages.yaml; do
  mv -f "$TMP/$b" "$BIN/$b"
done
echo "$STAMP" > "$BIN/.versions"

log "built in $((SECONDS - start))s into $BIN:"
for b in "${BINARIES[@]}"; do
  printf '  %-26s %6s\n' "$b" "$(du -h "$BIN/$b" | cut -f1)"
done
