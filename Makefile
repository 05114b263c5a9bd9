# Adnomaly developer entry points. `make run` and `make test` work on a fresh machine:
# they install what is missing (Python venv from requirements.lock, Kafka jars from Maven Central,
# PostgreSQL/Redis from apt, Kubernetes binaries built from Go modules), caching under ~/.cache/adnomaly.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIPELINE ?= manifests/pipeline.yaml
PYTEST_ARGS ?=

.PHONY: run test test-unit test-integration test-operator lint deps venv services k8s helm crds manifests e2e clean

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

services: venv
	$(BIN)/python -m adnomaly.services.install

k8s:
	tools/k8s/build.sh

helm:
	tools/helm/build.sh

# crds/ is generated from the Pipeline model (a test fails when it drifts).
crds: venv
	$(BIN)/python -m adnomaly_operator.crd > crds/pipelines.adnomaly.io.yaml

# manifests/install.yaml is the rendered chart (a test fails when it drifts).
manifests: venv helm
	$(BIN)/python -m adnomaly.services.helm

deps: venv services

run: deps
	$(BIN)/adnomaly up -f $(PIPELINE)

lint: venv
	$(BIN)/ruff check .

test-unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: deps
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test-operator: deps k8s helm
	$(BIN)/pytest tests/operator $(PYTEST_ARGS)

# The kind suite: needs Docker, kind and skaffold; skipped (with the reason) where they are missing.
e2e: deps k8s helm
	$(BIN)/pytest tests/e2e -m e2e -rs $(PYTEST_ARGS)

test: deps k8s helm lint
	$(BIN)/pytest tests $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .adnomaly
