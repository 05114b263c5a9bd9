# Shared steps of the tools/*/build.sh scripts, which build pinned binaries from Go modules into
# ${ADNOMALY_CACHE:-~/.cache/adnomaly}. Source it after setting OUT, BIN and STAMP and defining
# `present` (true when everything is built at STAMP); then call `gobuild_args "$@"` and
# `gobuild_begin NAME`. Afterwards FORCE/UPDATE are set, the build lock is held, the Go environment is
# pinned (read-only modules, no cgo, the local toolchain) and `log` prints a timestamped line.

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
