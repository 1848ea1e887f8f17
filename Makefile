# `make site` builds the default atlas; `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: site test lint setup bench clean chromium

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

# The browser tests use Debian's chromium; as root (as in CI) it is installed here, otherwise they skip.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium is not installed: the browser tests will be skipped"

# ruff's lint rules over the code, mypy over the package (settings in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check sitegen tests bench
	$(VENV)/bin/mypy

test: $(STAMP) chromium lint
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(PY) bench/visualize.py
	$(PY) bench/rules.py
	$(PY) bench/shared.py
	$(PY) bench/mining.py
	$(PY) bench/edges.py
	$(PY) bench/effects.py
	$(PY) bench/trees.py
	$(PY) bench/build.py
	$(PY) bench/sheets.py
	$(PY) bench/overhead.py
	$(PY) bench/scale.py

clean:
	-$(VENV)/bin/sitegen clean --out site
