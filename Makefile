# Everything a new user (and CI) needs, installed into local virtual
# environments: .venv with the newest releases, .venv-oldest with the oldest
# ones dneio supports (trio 0.22.2, outcome 1.2).
PYTHON ?= python3
VENV := .venv
OLDEST := .venv-oldest
PYTEST_ARGS ?=

.PHONY: demo test test-newest test-oldest lint bench clean

demo: $(VENV)/.installed
	$(VENV)/bin/python -m dneio demo

test: test-newest test-oldest lint

test-newest: $(VENV)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-oldest: $(OLDEST)/.installed
	$(OLDEST)/bin/python -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/python -m mypy --strict src
	$(VENV)/bin/python -m ruff check src tests

bench: $(VENV)/.installed
	$(VENV)/bin/python -m dneio bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test,trio,uvloop]'
	touch $@

$(OLDEST)/.installed: pyproject.toml ci/oldest-constraints.txt
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/python -m pip install -q --upgrade pip
	$(OLDEST)/bin/python -m pip install -q -c ci/oldest-constraints.txt -e '.[test,trio,uvloop]'
	touch $@

clean:
	rm -rf $(VENV) $(OLDEST) build src/*.egg-info
