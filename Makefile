# make demo          full gate against the bundled sample app (Staging build 2: rejected)
# make demo BUILD=1  the same with a good build (approved)
# make test          the test suite
# make mutate        mutation testing of the pure core (see README, Development)
VENV ?= .venv
PY := $(VENV)/bin/python
BUILD ?= 2

.PHONY: demo test lint mutate venv clean

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
	rm -rf $(VENV) .perfsig mutants

# Always from scratch: mutmut's cache in mutants/ does not notice a weakened test.
mutate: venv
	rm -rf mutants && mkdir mutants
	$(VENV)/bin/mutmut run --max-children 2 > mutants/run.log 2>&1 \
		|| { tr '\r' '\n' < mutants/run.log | tail -n 40; exit 1; }
	$(PY) scripts/mutation_report.py
