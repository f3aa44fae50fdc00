#!/bin/sh
# ApplicationStart: `python -m sample_app` for this deployment group's stage, in the background,
# its pid in $PIDFILE. A BUILD_NUMBER file at the bundle's root picks the sample app's build
# behaviour (1 and 3 healthy, 2 broken everywhere, 4 broken in production only).
set -eu
. "$(dirname "$0")/app.env"
mkdir -p "$RUN_DIR" "$LOG_DIR"
BUILD_NUMBER="${BUILD_NUMBER:-$(cat "$APP_DIR/BUILD_NUMBER" 2>/dev/null || echo 1)}"
export BUILD_NUMBER
cd "$APP_DIR"
# Every stream redirected: the CodeDeploy agent waits for a hook's output to close.
nohup "$VENV/bin/python" -m sample_app --stage "$STAGE" --host "$HOST" --port "$PORT" \
    --log-file "$LOG_DIR/serviceoutput.log" </dev/null >>"$LOG_DIR/stdout.log" 2>&1 &
echo $! >"$PIDFILE"
echo "sample app: stage $STAGE, build $BUILD_NUMBER, port $PORT, pid $(cat "$PIDFILE")"
