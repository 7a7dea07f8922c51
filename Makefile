# Two commands do all set-up on a fresh machine:
#   make demo   - the whole product (API + worker + demo shop) on an embedded Redis
#   make test   - the test suite against real servers it starts itself
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Real public data (GeoNames postal codes, ZIP census table) for tests, demo and benchmarks;
# see README "Data". Override with SHARED_DATA=/path/to/data.
SHARED_DATA ?= ../shared/data
# The demo's port: make demo PORT=8001
PORT ?= 8000
export OFFERWISE_SHARED_DATA ?= $(abspath $(SHARED_DATA))

# The snippet served at /v1/snippet.js: built from js-snippet/src with esbuild (pinned in
# js-snippet/package-lock.json), refused over 6 KB gzipped. npm ci runs again only when the
# lock file changes; the build only when a source, the build script or the lock file did.
# dist/ is not kept in git (a build output would go stale beside its source, and conflict in
# every merge): make test, make demo and so CI build it; the service refuses to start without.
SNIPPET_DIR := js-snippet
SNIPPET     := $(SNIPPET_DIR)/dist/offerwise.min.js
NODE_DEPS   := $(SNIPPET_DIR)/node_modules/.installed

.PHONY: demo test test-cluster lint bench bench-table system-deps snippet clean

$(BIN)/offerwise: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

system-deps:
	bash scripts/install-system-deps.sh

$(NODE_DEPS): $(SNIPPET_DIR)/package.json $(SNIPPET_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 || bash scripts/install-system-deps.sh node npm
	cd $(SNIPPET_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(SNIPPET): $(NODE_DEPS) $(wildcard $(SNIPPET_DIR)/src/*.js) $(SNIPPET_DIR)/scripts/build.js
	cd $(SNIPPET_DIR) && node scripts/build.js

snippet: $(SNIPPET)

demo: $(BIN)/offerwise snippet
	$(BIN)/offerwise demo --port $(PORT)

# Two test processes (pytest-xdist), each running one test file at a time, whole (module
# fixtures, synthetic worlds), the system tests' long files first (tests/conftest.py). Every
# session fixture (Redis on a free port, temp dirs, the demo) is per process.
TEST_PROCS ?= 2
test: $(BIN)/offerwise system-deps snippet
	$(BIN)/pytest -n $(TEST_PROCS) --dist loadfile --no-loadscope-reorder

# The integration tests that cover every path's Redis use (collect, recommend, campaigns, CRM,
# registry and serving, archiver, jobs, erasure), the failover under load and the two-node
# service, against a local Redis Cluster (3 masters, 3 replicas on loopback ports) that the
# session starts and stops; the job queue on a single server beside it. The rest of the suite
# passes there too (about 25 min on 2 cores):
#   make test-cluster CLUSTER_TESTS="tests/store tests/clickstream tests/enrichment tests/campaigns tests/app tests/models"
CLUSTER_TESTS ?= tests/store tests/clickstream/test_collect.py tests/clickstream/test_archiver.py \
	tests/clickstream/test_ingest_script.py tests/clickstream/test_identity.py \
	tests/campaigns/test_recommend.py tests/campaigns/test_campaigns.py \
	tests/enrichment/test_crm_import.py tests/app/test_erasure.py tests/app/test_admin_staff.py \
	tests/app/test_store_outage.py tests/models/test_registry.py \
	tests/system/test_cluster_failover.py tests/system/test_multi_node.py \
	tests/system/test_bench_table_cluster_smoke.py

test-cluster: $(BIN)/offerwise system-deps snippet
	$(BIN)/pytest --redis-cluster $(CLUSTER_TESTS)

lint: $(BIN)/offerwise
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(BIN)/offerwise system-deps
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# One table of every HTTP and pipeline figure (README "Benchmarks"); SOAK=60 for a short soak,
# CLUSTER=1 to measure the same on a local 3+3 Redis Cluster afterwards (rows beside).
SOAK ?= 600
CLUSTER ?=
bench-table: $(BIN)/offerwise system-deps snippet
	$(BIN)/python bench/bench_table.py --soak $(SOAK) $(if $(CLUSTER),--redis-cluster)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache .hypothesis
	rm -rf $(SNIPPET_DIR)/node_modules $(SNIPPET_DIR)/dist
