# Every target a contributor needs; `make help` lists them. The test command is `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: reference-models cluster-status checkov-install checkov chart-lint actionlint chaos
.PHONY: help venv lint format typecheck imports crds check-crds controlplane unit integration optimizer-tests e2e test render-examples cluster-up cluster-down bench demo

help: ## List every target with what it does
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

CHECKOV_VERSION ?= 3.3.30
CHECKOV_VENV := $(VENV)/tools/checkov

$(VENV)/.installed: pyproject.toml e2e/pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[optimize]' --group dev
	$(BIN)/pip install -q -e e2e
	touch $@

venv: $(VENV)/.installed ## Create .venv: the package with its optimizer extra, the dev tools group, then the dev cluster (e2e/)

$(CHECKOV_VENV)/bin/checkov:
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q 'checkov==$(CHECKOV_VERSION)'

checkov-install: $(CHECKOV_VENV)/bin/checkov ## Install checkov in its own venv (its pins would downgrade boto3 and packaging in .venv)

chart-lint: venv controlplane ## helm lint --strict, values schema, kubernetes-validate 1.36 and RBAC shape of the chart
	$(BIN)/pytest tests/integration/test_chart.py -k "lint or schema or valid or least_privilege or hardened" $(PYTEST_ARGS)

checkov: venv controlplane checkov-install ## checkov on the rendered chart, the Dockerfiles and the operator's rendered children
	$(BIN)/pytest tests/integration/test_security.py -k checkov $(PYTEST_ARGS)

actionlint: ## Check .github/workflows with actionlint (built once from its Go module; version in scripts/tools.env)
	@bin=$$(scripts/build_tools.sh) && "$$bin/actionlint"

lint: venv actionlint ## ruff lint and format check, and actionlint on the workflows
	$(BIN)/ruff check operator tests benchmarks e2e scripts
	$(BIN)/ruff format --check operator tests benchmarks e2e scripts

format: venv ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff format operator tests benchmarks e2e scripts
	$(BIN)/ruff check --fix operator tests benchmarks e2e scripts

typecheck: venv ## mypy --strict on the package and the dev cluster (e2e/devcluster)
	$(BIN)/mypy

imports: venv ## import-linter: the layering of the whole package (see pyproject.toml)
	$(BIN)/lint-imports

crds: venv ## Regenerate crds/ (and the chart's copy) from the pydantic models
	$(PY) scripts/generate_api.py --write

check-crds: venv ## Fail when the committed CRD differs from the generator's output
	$(PY) scripts/generate_api.py --check

controlplane: ## Build (once, cached) etcd, kube-apiserver, controller-manager, scheduler, kubectl, kwok, helm and Prometheus; fetch the Gateway API CRDs
	e2e/devcluster/build.sh
	e2e/devcluster/build_prometheus.sh
	e2e/devcluster/gateway_api.sh

unit: venv ## Unit tests: pure functions, no server, no TensorFlow; and the repository's shape (the wheel holds only the product)
	$(BIN)/pytest tests/unit tests/repo $(PYTEST_ARGS)

integration: venv controlplane checkov-install ## Integration tests against the real local control plane (and of the dev cluster itself)
	$(BIN)/pytest tests/harness tests/integration $(PYTEST_ARGS)

optimizer-tests: venv ## Optimizer tests: TensorFlow, a local S3 (moto) and HTTP server; about a minute
	$(BIN)/pytest tests/optimizer $(PYTEST_ARGS)

reference-models: venv ## Train the digits MLP and CNN into .cache/reference-models (no download)
	$(BIN)/python -m modeldeploy.optimize.reference --out .cache/reference-models

e2e: venv controlplane ## Whole-stack scenarios with the shipped examples on the local control plane
	$(BIN)/pytest e2e $(PYTEST_ARGS)

test: venv lint typecheck imports check-crds controlplane checkov-install ## The whole suite, from a fresh clone (what CI runs)
	$(BIN)/pytest tests e2e $(PYTEST_ARGS)

render-examples: venv ## Render every example's children (like helm template)
	@for f in examples/*.yaml; do echo "# --- $$f"; $(BIN)/modeldeploy render -f $$f || exit 1; done

cluster-up: venv controlplane ## Start a local control plane and print the KUBECONFIG line
	$(BIN)/python -m devcluster up

cluster-status: venv ## Report whether the local control plane started by cluster-up is running and healthy
	$(BIN)/python -m devcluster status

cluster-down: venv ## Stop the local control plane started by cluster-up
	$(BIN)/python -m devcluster down

chaos: venv controlplane ## The chaos and fuzz suite in long (100 kill -9, outages, 200+ invalid specs, 50 drift edits; ~30 min): prints the table
	$(PY) benchmarks/chaos.py

bench: venv controlplane ## Run every benchmark script (prints tables; ~75 min: scale to 1,000 objects, KServe built and compared, the chaos suite)
	@for f in benchmarks/*.py; do echo "# --- $$f"; $(PY) $$f || exit 1; done

demo: venv controlplane ## The whole stack locally: control plane, operator, an example optimized and Ready
	$(BIN)/python -m devcluster demo
