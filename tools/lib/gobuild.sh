# Shared steps of the tools/*/build.sh scripts, which build pinned binaries from Go modules into
# ${ADNOMALY_CACHE:-~/.cache/adnomaly}. A script that builds one binary from one generated go.mod calls
# `gobuild_single NAME VERSION "$@"`, then `gobuild_pin_module` (the `--update` and the pin check) and
# `gobuild_install` (build, install, stamp). Others (k8s, keda) set OUT, BIN and STAMP and define `present`
# (true when everything is built at STAMP) themselves, then call `gobuild_args "$@"` and `gobuild_begin NAME`.
# Afterwards FORCE/UPDATE are set, the build lock is held, the Go environment is pinned (read-only modules,
# no cgo, the local toolchain) and `log` prints a timestamped line.

CACHE_ROOT="${ADNOMALY_CACHE:-$HOME/.cache/adnomaly}"

log() { echo "[$(date +%H:%M:%S)] $*"; }

# The usage text: the script's leading comment block, without the `#`.
gobuild_usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; }

gobuild_args() {
  FORCE=0
  UPDATE=0
  local arg
  for arg in "$@"; do
    case "$arg" in
      --force) FORCE=1 ;;
      --update) UPDATE=1; FORCE=1 ;;
      --print-bin) echo "$BIN"; exit 0 ;;
      -h|--help) gobuild_usage; exit 0 ;;
      *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
  done
}

# Exit at once when `present`; otherwise take the build lock (one build at a time: make and a test
# session may both ask) and re-check once we hold it.
gobuild_begin() {
  local name="$1"
  if [[ $FORCE -eq 0 ]] && present; then
    echo "$name up to date ($STAMP): $BIN"
    exit 0
  fi
  mkdir -p "$OUT"
  exec 9>"$OUT/.build.lock"
  if ! flock -n 9; then
    echo "waiting for another build.sh to finish ($OUT/.build.lock)"
    flock 9
  fi
  if [[ $FORCE -eq 0 ]] && present; then
    echo "$name up to date ($STAMP): $BIN"
    exit 0
  fi
  export GOFLAGS="-trimpath -mod=readonly"
  export CGO_ENABLED=0
  export GOTOOLCHAIN=local
}

# gobuild_single NAME VERSION [SCRIPT ARGS...]: the start of a script that builds the one binary NAME from a
# module pinned at VERSION (helm, minio, mc, vegeta): OUT=$CACHE_ROOT/NAME/VERSION, BIN=$OUT/bin,
# STAMP=NAME=VERSION and a `present` that checks BIN/NAME against the stamp; then `gobuild_args` with the
# script's arguments and `gobuild_begin`. What is left to the script: `gobuild_pin_module` and `gobuild_install`.
gobuild_single() {
  GOBUILD_NAME="$1"
  OUT="$CACHE_ROOT/$1/$2"
  BIN="$OUT/bin"
  STAMP="$1=$2"
  shift 2
  present() { [[ -x "$BIN/$GOBUILD_NAME" && -f "$BIN/.versions" && "$(cat "$BIN/.versions")" == "$STAMP" ]]; }
  gobuild_args "$@"
  gobuild_begin "$GOBUILD_NAME"
}

# The repository's root, for messages and module paths (this file is tools/lib/gobuild.sh).
GOBUILD_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# gobuild_pin_module DIR MODULE VERSION GO_LANG_VERSION [GO MOD EDIT FLAGS...]: DIR (a folder of tools/
# whose tools.go imports MODULE) has a generated go.mod that pins MODULE at VERSION. With --update,
# regenerate DIR/go.mod and go.sum from that pin first (module adnomaly/<DIR>, `go GO_LANG_VERSION`, the
# extra `go mod edit` flags such as a -replace the module's own go.mod carries, then go mod tidy); in any
# case exit with an error when go.mod does not pin MODULE at VERSION.
gobuild_pin_module() {
  local dir="$1" mod="$2" version="$3" golang="$4"
  shift 4
  local rel="${dir#"$GOBUILD_REPO"/}" script
  script="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
  script="${script#"$GOBUILD_REPO"/}"
  if [[ $UPDATE -eq 1 ]]; then
    log "regenerating $rel/go.mod for $mod $version"
    rm -f "$dir/go.mod" "$dir/go.sum"
    (cd "$dir" && GOFLAGS=-mod=mod go mod init "adnomaly/$rel" >/dev/null 2>&1)
    (cd "$dir" && go mod edit -go="$golang" -require="$mod@$version" "$@")
    (cd "$dir" && GOFLAGS=-mod=mod go mod tidy)
  fi
  if ! grep -Eq "^[[:space:]]*(require )?${mod//./\\.} ${version//./\\.}( |$)" "$dir/go.mod" 2>/dev/null; then
    echo "$rel/go.mod does not pin $mod $version; run: $script --update" >&2
    exit 1
  fi
}

# gobuild_install NAME DIR PACKAGE [GO BUILD FLAGS...]: `go build` PACKAGE in DIR (its go.mod) into a
# temporary file under OUT, then move it to BIN/NAME, write STAMP to BIN/.versions and log the time taken
# and the size. For scripts that build one binary.
gobuild_install() {
  local name="$1" dir="$2" pkg="$3" start=$SECONDS
  shift 3
  GOBUILD_TMP="$(mktemp -d "$OUT/bin.tmp.XXXXXX")"
  trap 'rm -rf "$GOBUILD_TMP"' EXIT
  log "building $name ($STAMP)"
  (cd "$dir" && go build "$@" -o "$GOBUILD_TMP/$name" "$pkg")
  mkdir -p "$BIN"
  mv -f "$GOBUILD_TMP/$name" "$BIN/$name"
  echo "$STAMP" > "$BIN/.versions"
  log "built in $((SECONDS - start))s into $BIN: $name $(du -h "$BIN/$name" | cut -f1)"
}
