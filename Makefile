# Adnomaly developer entry points. `make run` and `make test` work on a fresh machine:
# they install what is missing (Python venv from requirements.lock, Feast's and PyFlink's own venvs, Kafka
# jars from Maven Central, PostgreSQL/Redis from apt, Kubernetes binaries built from Go modules), caching under ~/.cache/adnomaly.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIPELINE ?= manifests/pipeline.yaml
PYTEST_ARGS ?=

.PHONY: run test compiled test-unit test-integration test-operator test-security test-bad-input test-reliability lint deps venv services k8s k8s-node keda helm images crds manifests e2e e2e-node cluster-up cluster-down clean

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# The detector's hot path compiled by mypyc beside its sources (adnomaly/compiled.py); a no-op when the
# extensions match the sources, and without a C compiler the sources simply run.
compiled: venv
	$(BIN)/python -m adnomaly.compiled

services: venv
	$(BIN)/python -m adnomaly.services.install

k8s:
	tools/k8s/build.sh

# kubelet, kube-proxy (same k8s.io/kubernetes pin as `k8s`), CoreDNS and local-path-provisioner.
k8s-node:
	tools/k8s/node-build.sh

# KEDA's operator and metrics adapter from its Go module (pinned in tools/keda/build.sh), for the e2e test
# that runs KEDA for real (tests/e2e/test_keda.py). Long the first time (thousands of packages); cached.
keda:
	tools/keda/build.sh

helm:
	tools/helm/build.sh

# The operator and components images (docker/Dockerfile) and the e2e suite's Kafka, PostgreSQL, Redis and
# MinIO images, built by buildah from Debian's packages without a registry; cached by their inputs' digest
# under ~/.cache/adnomaly/images (a warm run builds nothing). Needs root (without it: says so, builds nothing).
images: venv
	$(BIN)/python -m adnomaly.services.images --skip-unless-root

# A control plane plus one real node (containerd + runc + kubelet + kube-proxy, in a network namespace of
# its own), in the background; prints the kubeconfig path. Needs root. CLUSTER_DIR holds its state,
# cluster.pid, cluster.json and cluster.log; CLUSTER_IMAGES is a space-separated list of OCI archives to load.
CLUSTER_DIR ?= /var/tmp/adnomaly-cluster
CLUSTER_IMAGES ?=
cluster-up: venv k8s k8s-node
	@$(BIN)/python -m adnomaly.services.node up --state-dir=$(CLUSTER_DIR) $(foreach image,$(CLUSTER_IMAGES),--image=$(image))

cluster-down: venv
	@$(BIN)/python -m adnomaly.services.node down --state-dir=$(CLUSTER_DIR)

# crds/ is generated from the Pipeline model (a test fails when it drifts).
crds: venv
	$(BIN)/python -m adnomaly_operator.crd > crds/pipelines.adnomaly.io.yaml

# manifests/install.yaml is the rendered chart (a test fails when it drifts).
manifests: venv helm
	$(BIN)/python -m adnomaly.services.helm

deps: venv compiled services

run: deps
	$(BIN)/adnomaly up -f $(PIPELINE)

lint: venv
	$(BIN)/ruff check .

test-unit: venv compiled
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: deps
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test-operator: deps k8s helm
	$(BIN)/pytest tests/operator $(PYTEST_ARGS)

# Security properties of the data plane: Kafka SCRAM/TLS and per-component ACLs on a real broker, secrets in
# no log, ingest token rotation without a failed request (the rendered-manifest checks are in test-operator).
test-security: deps
	$(BIN)/pytest tests/unit/test_kafka_client.py tests/unit/test_kafka_acls.py tests/unit/test_ingest_auth.py \
		tests/integration/test_kafka_security.py tests/integration/test_secrets_in_logs.py \
		tests/integration/test_ingest_rotation.py $(PYTEST_ARGS)

# The malformed-input corpus through the codec, the ingest API and the raw topic, and the ingest API fuzzers.
test-bad-input: deps
	$(BIN)/pytest tests/unit/test_corpus.py tests/unit/test_corpus_limits.py tests/integration/test_bad_input.py \
		tests/integration/test_ingest_fuzz.py $(PYTEST_ARGS)

# The fault suite: the whole pipeline under load while a seeded chaos driver kill -9s components, Kafka,
# PostgreSQL and Redis and cuts MinIO; then every acknowledged event must be stored exactly once.
# Longer: ADNOMALY_RELIABILITY_MINUTES=10 make test-reliability (also _SEED, _FAULTS, _RATE).
test-reliability: deps
	$(BIN)/pytest tests/reliability -m reliability $(PYTEST_ARGS)

# The e2e suite: the project's images on a real node here (tests/e2e/test_pods.py, test_real_node.py), and
# with ADNOMALY_E2E_PROVIDER=kind, the same checks on kind plus test_platform.py's (Strimzi, Flink operator, Grafana).
e2e: deps k8s k8s-node keda helm images
	$(BIN)/pytest tests/e2e -m e2e -rs $(PYTEST_ARGS)

# The real-node suite (root): Node Ready, security context, logs, DNS, Service IPs, PVCs, SIGTERM, clean stop.
e2e-node: venv k8s k8s-node
	$(BIN)/pytest tests/e2e/test_real_node.py -m e2e -rs $(PYTEST_ARGS)

test: deps k8s k8s-node keda helm images lint
	$(BIN)/pytest tests $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .adnomaly
	rm -f components/adnomaly/*/*.so components/adnomaly/*/_compiled.stamp
