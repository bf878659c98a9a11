# Two commands for a newcomer: `make demo` (set up + main job) and `make test` (set up + tests).
# Set-up installs the exact versions in requirements-lock.txt (the suite was last green with them);
# `make test-latest` tries the newest versions pyproject.toml allows, and `make lock` records them once green.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements-lock.txt
PIP_VERSION := 26.3
# The CPU wheel on this project's machines; installed first, else pip resolves torch to a multi-GB CUDA build.
TORCH ?= torch==2.13.0
LATEST_VENV := .venv-latest

.PHONY: setup demo test bench test-latest lock clean

$(STAMP): pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "pip==$(PIP_VERSION)"
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip check
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) examples/run_demo.py $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# A fresh environment with the newest releases pyproject.toml allows (torch stays $(TORCH)), then the suite.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q "pip==$(PIP_VERSION)"
	$(LATEST_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(LATEST_VENV)/bin/python -m pip install -q -e ".[dev]"
	$(LATEST_VENV)/bin/python -m pip freeze --exclude-editable
	$(LATEST_VENV)/bin/python -m pytest $(PYTEST_ARGS)

# Regenerate the lock file from the environment `test-latest` just tested green (local version labels such
# as +cpu dropped, so the same file serves CPU and GPU machines).
lock: test-latest
	{ echo "# Exact versions the test suite last passed with; made by 'make lock' on $$(date -u +%F)."; \
	  $(LATEST_VENV)/bin/python -m pip freeze --exclude-editable | sed -E 's/^([^=]+==[^+]+)\+.*/\1/'; } > $(LOCK)

clean:
	rm -rf $(VENV) $(LATEST_VENV) build outputs .pytest_cache
