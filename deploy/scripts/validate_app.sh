#!/bin/sh
# ValidateService: the app answers /health within 30 s (VALIDATE_TRIES), or the deployment fails
# (and rolls back).
set -u
. "$(dirname "$0")/app.env"
i=0
while [ "$i" -lt "$VALIDATE_TRIES" ]; do
    if "$VENV/bin/python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/health', timeout=2)" \
        2>/dev/null; then
        echo "sample app answers on port $PORT"
        exit 0
    fi
    i=$((i + 1))
    sleep 0.5
done
echo "sample app does not answer on port $PORT; its last output:" >&2
tail -n 20 "$LOG_DIR/stdout.log" >&2 2>/dev/null || true
exit 1
