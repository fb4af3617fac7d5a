# Two entry points: `make run` (train on the embedded digits data) and `make test` (what CI runs: every
# test); `make test-quick` runs the tests that start no process and were measured fast (tests/conftest.py).
# Each creates the virtual environment in .venv on first use, so either works on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: install run test test-quick test-durations config-docs clean

# Reinstalled when pyproject.toml changes (new dependencies, extras or console scripts).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,test]'
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) launch.py $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

test-quick: $(VENV)/.installed
	$(PY) -m pytest -q -m "not subprocess and not heavy and not slow" tests

# Measures the tests that start no process and rewrites tests/durations.json, which decides `heavy`.
test-durations: $(VENV)/.installed
	$(PY) -m pytest -q -m "not subprocess and not slow" --write-durations=tests/durations.json tests

# Regenerates docs/config.md from the config schema (tests/test_config_reference.py checks it is current).
config-docs: $(VENV)/.installed
	$(PY) -m superfed_jax.config_reference --markdown > docs/config.md

clean:
	rm -rf $(VENV) *.egg-info build
