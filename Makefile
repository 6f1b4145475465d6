# Order Engine — developer commands. `make help` lists them.
# Every target that needs the virtualenv creates it (and installs the project) when missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# What is installed, one stamp per purpose: running the stack needs the runtime and the embedded
# servers only; testing, linting and the benchmark add their extras (Playwright, schemathesis,
# mypy…), which `make run` need not wait for.
RUN_STAMP    := $(VENV)/.installed-run
TEST_STAMP   := $(VENV)/.installed-test
FLOWER_STAMP := $(VENV)/.installed-flower
PYTEST_ARGS ?=
export PATH := $(abspath $(BIN)):$(PATH)
# Each checkout its own pytest temp root: pytest keeps only the newest three session folders under
# one root, so two checkouts testing at once on one machine would prune each other's, with the
# private servers running in them.
PYTEST_DEBUG_TEMPROOT ?= /tmp/order-engine-$(shell printf '%s' "$(CURDIR)" | cksum | cut -d' ' -f1)
export PYTEST_DEBUG_TEMPROOT
$(shell mkdir -p $(PYTEST_DEBUG_TEMPROOT))

.DEFAULT_GOAL := help
.PHONY: help install run localnet api worker scheduler flower migrate revision test test-slow test-rabbitmq test-no-overrides test-cluster fuzz soak bench bench-cluster venue-report config-docs lint fmt typecheck clean

help: ## Show this list of targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(RUN_STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded]'
	@touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[embedded,test,dev,flower]'
	@touch $@

$(FLOWER_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[embedded,flower]'
	@touch $@

install: $(TEST_STAMP) ## Create the virtualenv and install the project with all extras (make run installs only what running needs)

run: $(RUN_STAMP) ## Start API + worker + scheduler (embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set)
	$(BIN)/order-engine run

localnet: $(RUN_STAMP) ## Start only the localnet (simulated Solana validator + pools) on port LOCALNET_PORT (8899)
	$(BIN)/order-engine localnet serve

api: $(RUN_STAMP) ## Start only the API (gunicorn)
	$(BIN)/order-engine api

worker: $(RUN_STAMP) ## Start only a Celery worker
	$(BIN)/order-engine worker

scheduler: $(RUN_STAMP) ## Start only the scheduler (Celery beat: runs the reconciler)
	$(BIN)/order-engine scheduler

flower: $(FLOWER_STAMP) ## Start Celery Flower on :5555 (read-only; set FLOWER_BASIC_AUTH=user:pass to expose it)
	$(BIN)/order-engine flower

migrate: $(RUN_STAMP) ## Upgrade the database to the latest migration
	$(BIN)/order-engine migrate

revision: $(RUN_STAMP) ## Autogenerate a migration: make revision m="add a column"
	@test -n "$(m)" || { echo 'usage: make revision m="what changed"'; exit 2; }
	$(BIN)/order-engine revision -m "$(m)"

test: $(TEST_STAMP) ## Run the whole test suite against real PostgreSQL and Redis (embedded unless URLs are set)
	$(BIN)/python -m pytest -m "not slow and not cluster" $(PYTEST_ARGS)

RABBITMQ_URL ?= amqp://guest:guest@127.0.0.1:5672/

test-rabbitmq: $(TEST_STAMP) ## Run the broker-sensitive tests with RabbitMQ as the Celery broker (RABBITMQ_URL; skipped if none answers)
	@if $(BIN)/python -c 'import sys; from tests.support.brokers import rabbitmq_reachable as r; sys.exit(0 if r(sys.argv[1]) else 1)' '$(RABBITMQ_URL)'; then \
		TEST_BROKER=rabbitmq TEST_RABBITMQ_URL='$(RABBITMQ_URL)' $(BIN)/python -m pytest -m "broker and not slow" $(PYTEST_ARGS); \
	else \
		echo "test-rabbitmq SKIPPED: no RabbitMQ answers at $(RABBITMQ_URL) (set RABBITMQ_URL=amqp://user:pass@host:5672/vhost)"; \
	fi

test-no-overrides: $(TEST_STAMP) ## Run the suite on Celery and kombu as they come (CELERY_OVERRIDES=false; order_engine/tasking/overrides/)
	TEST_CELERY_OVERRIDES=false $(BIN)/python -m pytest -m "not slow and not cluster" $(PYTEST_ARGS)

test-cluster: $(TEST_STAMP) ## Seven hosts in network namespaces (root; skipped where namespaces can't be made): a worker host cut off mid-flight
	$(BIN)/python -m pytest -m cluster -s -p no:randomly tests/cluster $(PYTEST_ARGS)

test-slow: $(TEST_STAMP) ## Run the long fault-injection scenarios too (not the soak)
	$(BIN)/python -m pytest -m "not soak and not cluster" $(PYTEST_ARGS)

fuzz: $(TEST_STAMP) ## Schemathesis against the served API, every check, fixed seed, ≥ 2,000 cases (FUZZ_EXAMPLES=n per operation, default 200)
	FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),200) $(BIN)/python -m pytest -s -p no:randomly tests/integration/test_fuzz_api.py $(PYTEST_ARGS)

soak: $(TEST_STAMP) ## 2,000 orders while the worker is killed, Redis emptied and PostgreSQL restarted (SOAK_ORDERS=n)
	$(BIN)/python -m pytest -m soak -s -p no:randomly tests/integration/faults/test_soak.py $(PYTEST_ARGS)

bench: $(TEST_STAMP) ## Benchmark intake, end to end, WebSockets, cost per order, triggers (BENCH_ARGS=--quick: a short run; "--preset peer": 1,000 orders over 50 connections, a WebSocket each, --peer-orders N for fewer; "--preset triggers": 100,000 waiting limit orders, 1,000 crossed at once; "--preset positions": 100,000 waiting stops, brackets and trailing stops, 600 crossed at once; "--preset contested": 1,000 market orders per landing strategy on a congested chain with the searcher on; --profile: py-spy); report in bench/results/
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-cluster: $(TEST_STAMP) ## Orders/s and CPU per order with 1 and 2 worker hosts in network namespaces (root; BENCH_ARGS="--workers 1 2 3 --rate 40 --seconds 15"); tests/cluster/test_scaling.py
	BENCH_CLUSTER=1 BENCH_ARGS='$(BENCH_ARGS)' $(BIN)/python -m pytest -m cluster -s -p no:randomly tests/cluster/test_scaling.py $(PYTEST_ARGS)

venue-report: $(RUN_STAMP) ## Replay 1,000 seeded orders on virtual time and summarise routing, slippage and failures
	$(BIN)/python -m order_engine.tools.venue_report --orders $(or $(n),1000) --seed $(or $(seed),7)

config-docs: $(RUN_STAMP) ## Regenerate docs/configuration.md and .env.example from the settings' declarations (order_engine/config)
	$(BIN)/python -m order_engine.tools.config_docs

lint: $(TEST_STAMP) ## Lint with ruff, type-check with mypy, check the import contracts (setup.cfg) and module/function sizes
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy order_engine workers
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -p no:randomly tests/unit/test_layout.py

typecheck: $(TEST_STAMP) ## Type-check with mypy only
	$(BIN)/mypy order_engine workers

fmt: $(TEST_STAMP) ## Format and auto-fix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## Remove the virtualenv and the embedded servers' state (stop `make run` first)
	rm -rf $(VENV) .state
