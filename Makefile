# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast system-packages lint docs check-docs lock k8s pictures

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(PY) -m devtools.demo

# The system packages first (installed as root, else one line saying what to install), so that a
# missing tool stops the run at once instead of failing tests twenty minutes in; devtools.noskip
# turns any skipped test into a failure.
test: system-packages $(VENV)/.installed
	$(PY) -m pytest -p devtools.noskip

# Standard library only, run by path: it runs before the virtualenv exists. Its stdout is empty when
# everything is there, else the one line make stops with ($(error) adds no second line of its own).
SYSTEM_PACKAGES_PROBLEM = $(shell $(PYTHON) devtools/system_packages.py ensure)
system-packages:
	$(if $(SYSTEM_PACKAGES_PROBLEM),$(error $(SYSTEM_PACKAGES_PROBLEM)))

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
	$(PY) -m devtools.k8s_rules

# deploy/kubernetes/prometheusrule.yaml, from alerts/prefect-db-alerts.yml.
k8s: $(VENV)/.installed
	$(PY) -m devtools.k8s_rules

# requirements.lock: the image's exact dependencies, with hashes (the Dockerfile installs from it).
lock: $(VENV)/.installed
	$(PY) -m pip install -q uv
	$(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
		--custom-compile-command 'make lock' pyproject.toml -o requirements.lock

# The README's pictures of the dashboards (docs/img/*.png): every board drawn from a live Prometheus
# scraping the exporter on the demo's trouble scene, recorded for four minutes.
pictures: $(VENV)/.installed
	$(PY) -m devtools.pictures
