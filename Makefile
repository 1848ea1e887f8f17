# `make site` builds the default atlas; `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: site test setup bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch torchvision
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

site: $(STAMP)
	$(VENV)/bin/sitegen build --config content/atlas.toml --out site
	$(VENV)/bin/sitegen check site

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(PY) bench/visualize.py
	$(PY) bench/mining.py
	$(PY) bench/edges.py
	$(PY) bench/build.py

clean:
	-$(VENV)/bin/sitegen clean --out site
