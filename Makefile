# make demo          full gate against the bundled sample app (Staging build 2: rejected)
# make demo BUILD=1  the same with a good build (approved)
# make test          the test suite
# make mutate        mutation testing of the pure core (see README, Development)
VENV ?= .venv
PY := $(VENV)/bin/python
BUILD ?= 2

.PHONY: demo test test-busy lint mutate venv clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# The JUnit schema pytest validates its xunit2 output against, from pytest's own source
# distribution (the tests validate our JUnit XML with it).
$(VENV)/junit-10.xsd: $(VENV)/.installed
	rm -rf $(VENV)/pytest-sdist && mkdir -p $(VENV)/pytest-sdist
	$(PY) -m pip download --quiet --no-deps --no-binary :all: \
		"pytest==$$($(PY) -c 'import pytest; print(pytest.__version__)')" -d $(VENV)/pytest-sdist
	tar -xzf $(VENV)/pytest-sdist/pytest-*.tar.gz -C $(VENV)/pytest-sdist --wildcards '*/junit-10.xsd'
	cp $(VENV)/pytest-sdist/pytest-*/testing/example_scripts/junit-10.xsd $@

demo: $(VENV)/.installed
	$(PY) scripts/demo.py --build $(BUILD)

test: $(VENV)/.installed $(VENV)/junit-10.xsd
	PERFSIG_JUNIT_XSD=$(VENV)/junit-10.xsd \
	$(PY) -m pytest -q

# The suite beside two CPU-burning processes, RUNS times in a row (CI: the e2e tests once).
RUNS ?= 3
PYTEST_ARGS ?= -q
test-busy: $(VENV)/.installed $(VENV)/junit-10.xsd
	PERFSIG_JUNIT_XSD=$(VENV)/junit-10.xsd \
	$(PY) scripts/busy.py --burners 2 --runs $(RUNS) -- $(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy pytest_perfsig sample_app

clean:
	rm -rf $(VENV) .perfsig mutants

# Always from scratch: mutmut's cache in mutants/ does not notice a weakened test.
mutate: venv
	rm -rf mutants && mkdir mutants
	$(VENV)/bin/mutmut run --max-children 2 > mutants/run.log 2>&1 \
		|| { tr '\r' '\n' < mutants/run.log | tail -n 40; exit 1; }
	$(PY) scripts/mutation_report.py
