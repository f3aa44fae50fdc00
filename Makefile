# make demo          full gate against the bundled sample app (Staging build 2: rejected)
# make demo BUILD=1  the same with a good build (approved)
# make test          the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
BUILD ?= 2

.PHONY: demo test lint venv clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) scripts/demo.py --build $(BUILD)

test: venv
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy pytest_perfsig sample_app

clean:
	rm -rf $(VENV) .perfsig
