#!/bin/sh
# AfterInstall: a virtualenv with the sample app's own dependencies. The app imports nothing
# from pytest-perfsig, so the gate's dependencies (numpy, scipy, locust) stay off the stage.
set -eu
. "$(dirname "$0")/app.env"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    'starlette>=0.37' 'uvicorn>=0.29' 'prometheus-client>=0.17'
