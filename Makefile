# Two entry points: `make run` (train on the embedded digits data) and `make test`.
# Each creates the virtual environment in .venv on first use, so either works on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: install run test clean

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

clean:
	rm -rf $(VENV) *.egg-info build
