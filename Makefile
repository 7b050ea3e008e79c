# The two commands of the quick start: `make serve` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install serve test test-unit lint models clean

install:
	@bash scripts/install.sh

models: install
	@$(VENV)/bin/slm-router prepare-models

serve: install
	@$(VENV)/bin/slm-router serve $(if $(CONFIG),--config $(CONFIG))

test: install
	@$(PY) -m pytest -q --durations=25 tests

test-unit: install
	@$(PY) -m pytest -q tests/unit tests/integration

lint: install
	@$(VENV)/bin/ruff check gateway deployments router_models tests benchmarks loadtest
	@$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .state
