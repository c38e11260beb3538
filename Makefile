# jupyter-tre: the front door. `make demo` and `make test` are all a new host needs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help demo stop test check format bench image extension docs docs-check prereqs venv node clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

prereqs: ## Install the host packages the project needs and start Docker (as root)
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || scripts/install-prereqs python
	@scripts/install-prereqs data db
	@scripts/ensure-docker var/logs

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed; set PYTHON=")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

venv: $(INSTALLED) ## Create .venv with jupyter-tre and its development tools

IDP_MODULES := demo-idp/node_modules/.package-lock.json
PROXY_MODULES := proxy/node_modules/.package-lock.json
NODE_MODULES := $(IDP_MODULES) $(PROXY_MODULES)

$(IDP_MODULES): demo-idp/package-lock.json
	@scripts/check-node
	npm ci --no-audit --no-fund --prefix demo-idp

$(PROXY_MODULES): proxy/package-lock.json
	@scripts/check-node
	npm ci --no-audit --no-fund --prefix proxy

node: $(NODE_MODULES) ## Install the Node packages: demo OIDC provider, JupyterHub's proxy

extension: venv ## Build the workspace's Lab extension wheel (skipped when its sources are unchanged)
	@scripts/check-node
	@PATH="$(abspath $(BIN)):$$PATH" scripts/build-extension

demo: prereqs venv $(NODE_MODULES) extension ## Set up and run the demo site (see README)
	$(BIN)/tre policy validate policies/demo
	$(BIN)/tre key create --if-missing
	$(BIN)/tre demo data
	$(BIN)/tre ingest project gbm-linkage
	$(BIN)/tre ingest project hf-outcomes
	$(BIN)/tre demo release
	$(BIN)/tre image build
	$(BIN)/tre stack start
	@echo
	@echo "Log in at the address above. Demo logins (password: <username>-demo):"
	@echo "  alice, bob, carla (researchers), olivia, oscar (output checkers),"
	@echo "  adam (administrator), pat (patients' representative)."
	@echo "Stop with: make stop"

stop: ## Stop the demo stack (workspace folders and data are kept)
	@if [ -x $(BIN)/tre ]; then $(BIN)/tre stack stop; else echo "nothing to stop"; fi

test: prereqs venv $(NODE_MODULES) extension ## Run the whole test suite
	@scripts/install-prereqs browser deploy
	@rc=0; $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc

check: venv ## Lint, format check, type check, schema drift
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/tre policy schema --check

format: venv ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

BENCHES = pseudonyms ingest spawn audit review load
# ingest.py runs ingest_dicom, ingest_emr and ingest_genomics; each bench leaves
# var/bench/<name>.json, which bench/report.py turns into docs/reference/benchmarks.md.
bench: prereqs venv image ## Run every benchmark beside the tools users would otherwise pick; write docs/reference/benchmarks.md
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	set -e; for b in $(BENCHES); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py; done
	$(BIN)/python bench/report.py

image: prereqs venv extension ## Build the workspace image (reused when its inputs are unchanged)
	$(BIN)/tre image build

docs: venv ## Regenerate the generated reference docs
	$(BIN)/typer tre.cli utils docs --name tre --title "tre command reference" --output docs/reference/cli.md
	$(BIN)/tre policy schema

docs-check: venv ## Build the documentation site, failing on any warning or broken link
	$(BIN)/mkdocs build --strict --site-dir build/site

clean: ## Remove the virtual environment (var/ is runtime state and is kept)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-idp/node_modules proxy/node_modules
	rm -rf extensions/jupyter-tre-lab/node_modules extensions/jupyter-tre-lab/lib \
		extensions/jupyter-tre-lab/jupyter_tre_lab/labextension
	rm -f images/workspace/wheels/*.whl images/workspace/wheels/.jupyter-tre-lab.sha256
