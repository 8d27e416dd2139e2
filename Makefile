# AgentProvision event layer. `make help` lists every target with its one-line description.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
# Byte-code caches: every service, stand-in, task and CLI call is a new Python process. Without .pyc files (an
# environment with PYTHONDONTWRITEBYTECODE set) each one compiled databricks-sdk and the rest from source: 6-8 s
# to import a service instead of ~2.7 s. `setup` compiles the locked packages; our own modules cache at first use.
unexport PYTHONDONTWRITEBYTECODE
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=
PACKAGES := apev_contracts apev_runtime apev_stack apev_ingest apev_jobs apev_serving apev_writeback apev_monitor \
	apev_workspace apev_mcpsim apev_sinks apev_pipeline

.PHONY: help setup run demo test lint format kafka stop workspace mcp sinks bench asyncapi faults

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

setup: ## Install uv (pip), Java 17+ and Maven (apt) if missing; sync the locked workspace into .venv (byte-compiled)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || { echo "setup: installing uv with pip"; python3 -m pip install -q uv || python3 -m pip install -q --user --break-system-packages uv; }
	@$(UV) sync --frozen --compile-bytecode --quiet
	@bash deploy/prereqs.sh
	@echo "setup: .venv is in sync with uv.lock; Java 17+ and Maven present"

run: setup ## Run everything on embedded defaults, run the demo with live progress, tail events until Ctrl-C
	@$(UV) run --frozen python -m apev_stack run

demo: setup ## The demo without interaction on a fresh stack; exit 0 only if every step was verified; last line JSON
	@$(UV) run --frozen python -m apev_stack demo

test: setup ## Install and start what the suite needs (PostgreSQL, Kafka jars, Chromium), then run every test
	@bash deploy/chromium.sh >/dev/null
	@eval "$$(bash deploy/postgres.sh | grep '^APEV_TEST_PG_URL=')" && export APEV_TEST_PG_URL && \
	  $(UV) run --frozen python -m apev_stack kafka jars && \
	  $(UV) run --frozen pytest $(PYTEST_ARGS)

lint: setup ## ruff (lint + format check), mypy (strict on contracts and runtime), import-linter
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy $(addprefix -p ,$(PACKAGES))
	$(UV) run --frozen lint-imports

format: setup ## Apply ruff's fixes and formatting
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

asyncapi: setup ## Regenerate docs/asyncapi/<service>.json from the five apps' registered subscribers (tests/test_asyncapi.py checks drift)
	$(UV) run --frozen python -m apev_stack.asyncapi

kafka: setup ## Start the local Kafka broker in the background (idempotent) and print its bootstrap address
	@$(UV) run --frozen python -m apev_stack kafka start

stop: ## Stop every process the Makefile started
	@$(UV) run --frozen python -m apev_stack stop

workspace: setup ## Run the local Databricks workspace in the foreground (PORT=8787, DATA=.stack/data/workspace, as make run)
	$(UV) run --frozen python -m apev_workspace --port $(or $(PORT),8787) --data-dir $(or $(DATA),$(or $(APEV_STATE_DIR),.stack)/data/workspace)

mcp: setup ## Run the MCP server simulator in the foreground (PORT=8785)
	$(UV) run --frozen python -m apev_mcpsim --port $(or $(PORT),8785)

sinks: setup ## Run the Slack, PagerDuty and SMTP stand-ins in the foreground (PORT=8790, SMTP_PORT=8025)
	$(UV) run --frozen python -m apev_sinks --port $(or $(PORT),8790) --smtp-port $(or $(SMTP_PORT),8025)

bench: setup ## Every benchmark against its baseline (ONLY=<name> for one, QUICK=1 small); bench/results/<name>.json + SUMMARY.md
	@eval "$$(bash deploy/postgres.sh | grep '^APEV_TEST_PG_URL=')" && export APEV_TEST_PG_URL && \
	  $(UV) run --frozen python -m apev_stack kafka jars >/dev/null && \
	  $(UV) run --frozen python bench/run.py $(foreach n,$(ONLY),--only $(n)) $(if $(QUICK),--quick)

faults: setup ## Fault suite, long variants too; report in bench/results/faults.json; non-zero if anything lost/duplicated
	@eval "$$(bash deploy/postgres.sh | grep '^APEV_TEST_PG_URL=')" && export APEV_TEST_PG_URL && \
	  $(UV) run --frozen python -m apev_stack kafka jars && \
	  APEV_FAULTS_LONG=1 APEV_FAULTS_REPORT=bench/results/faults.json \
	  $(UV) run --frozen pytest tests/faults -p no:cacheprovider $(PYTEST_ARGS)
