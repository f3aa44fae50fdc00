#!/bin/sh
# ApplicationStop: stop the running sample app, if there is one.
set -u
. "$(dirname "$0")/app.env"
[ -f "$PIDFILE" ] || exit 0
pid=$(cat "$PIDFILE")
if kill "$pid" 2>/dev/null; then
    i=0
    while [ "$i" -lt 20 ] && kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
fi
rm -f "$PIDFILE"
