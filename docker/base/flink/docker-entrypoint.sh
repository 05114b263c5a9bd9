#!/bin/bash
# The pass-through part of the upstream Flink image's entry point: link each jar named in
# ENABLE_BUILT_IN_PLUGINS (";"-separated, from /opt/flink/opt) into a plugins/ directory of its own, as
# Flink's plugin loader wants, then run the command.
set -euo pipefail
IFS=';' read -r -a plugins <<< "${ENABLE_BUILT_IN_PLUGINS:-}"
for jar in "${plugins[@]}"; do
    [ -n "$jar" ] || continue
    if [ ! -f "$FLINK_HOME/opt/$jar" ]; then
        echo "docker-entrypoint.sh: ENABLE_BUILT_IN_PLUGINS names $jar, which is not in $FLINK_HOME/opt" >&2
        exit 1
    fi
    mkdir -p "$FLINK_HOME/plugins/${jar%.jar}"
    ln -sf "$FLINK_HOME/opt/$jar" "$FLINK_HOME/plugins/${jar%.jar}/$jar"
done
exec "$@"
