# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast lint docs check-docs pictures

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m devtools.demo

test: $(VENV)/.installed
	$(PY) -m pytest

# The pure tests only (no database, no external tools): seconds, for the edit-test loop.
test-fast: $(VENV)/.installed
	$(PY) -m pytest tests/unit

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check exporter devtools dashboards bench tests
	$(VENV)/bin/ruff format --check exporter
	$(VENV)/bin/mypy --strict exporter
	$(VENV)/bin/mypy --strict devtools dashboards bench
	$(VENV)/bin/lint-imports

docs: $(VENV)/.installed
	$(PY) -m devtools.metrics_doc

# The README's pictures of the dashboards (docs/img/*.png): every board drawn from a live Prometheus
# scraping the exporter on the demo's trouble scene, recorded for four minutes.
pictures: $(VENV)/.installed
	$(PY) -m devtools.pictures
