# make test   builds/reuses the cached Kubernetes binaries, installs the Python environment,
#             and runs the whole suite against a real local control plane.
# make demo   the same prerequisites, then a local cluster running the real vCluster 0.36.1 and a
#             JupyterHub with this spawner (demo/run.py); Ctrl-C stops everything
SHELL := bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/vcluster-spawner
CHP_VERSION := 5.3.0
CHP := $(CACHE)/node/chp-$(CHP_VERSION)/node_modules/.bin/configurable-http-proxy
# the hub started by tests and the demo finds configurable-http-proxy and the venv's tools here
export PATH := $(dir $(CHP)):$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: test lint unit cluster binaries venv chp chromium demo clean

$(STAMP): pyproject.toml
	@echo "[make] installing the Python environment in $(VENV)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -e '.[test]' > $(VENV)/install.log 2>&1 || { tail -30 $(VENV)/install.log; exit 1; }
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

# the Kubernetes control plane, etcd and helm; then the real vCluster, kine and its chart (the
# chart is packaged with that helm); then CoreDNS (the local cluster's DNS and vCluster's); then
# the vcluster CLI (the upstream tests check that it and the spawner agree on pause and resume)
binaries:
	@bin=$$(bash tools/build-binaries.sh | tail -1) && HELM=$$bin/helm bash tools/build-vcluster.sh >/dev/null
	@bash tools/build-vcluster.sh coredns >/dev/null
	@bash tools/build-vcluster.sh cli >/dev/null

$(CHP):
	@echo "[make] installing configurable-http-proxy $(CHP_VERSION) into $(CACHE)/node"
	@npm install --silent --no-audit --no-fund --prefix $(CACHE)/node/chp-$(CHP_VERSION) configurable-http-proxy@$(CHP_VERSION)

chp: $(CHP)

# the browser tests drive Debian's Chromium (Playwright never downloads a browser here)
chromium:
	@command -v chromium >/dev/null || { echo "[make] installing chromium (Debian)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; }

# --basetemp: our own temporary directory; in the shared /tmp/pytest-of-$USER another pytest run
# on the machine deletes all but the newest three, hub work directories of a running test too.
# Two workers, each with a local cluster of its own running the real vCluster (tests/conftest.py);
# worksteal: an idle worker takes tests queued for the other (their durations vary 1 s to 8 min);
# PYTEST_WORKERS=0 runs everything in one process
PYTEST_WORKERS ?= 2
test: lint binaries chp chromium
	@mkdir -p test-artifacts   # xdist creates --basetemp without its parents
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal --basetemp=$(CURDIR)/test-artifacts/pytest $(PYTEST_ARGS)

# ruff, configured in pyproject.toml; make test runs it first
lint: venv
	$(VENV)/bin/ruff check .

demo: venv binaries chp
	$(PY) demo/run.py

unit: venv
	$(PY) -m pytest -m "not cluster and not upstream and not hub and not browser and not chart and not lifecycle and not storage and not security" $(PYTEST_ARGS)

cluster: venv binaries
	$(PY) -m pytest -m cluster $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .localcluster .demo test-artifacts

# make bench   runs the benchmarks (benchmarks/, issue 8) on a local cluster of its own and writes
#              benchmarks/results/latest.json, report.md and plots; sizes from the environment or
#              make variables: BENCH_RUNS (10), BENCH_FIRST_START_RUNS (pool, wake-ahead: BENCH_RUNS),
#              BENCH_CONCURRENCY (1,5,10,20); always on the real vCluster 0.36.1
.PHONY: bench
bench: venv binaries chp
	@$(PY) -c "import matplotlib" 2>/dev/null || $(PY) -m pip install -e '.[test,bench]' >> $(VENV)/install.log 2>&1 || { tail -30 $(VENV)/install.log; exit 1; }
	$(PY) -m benchmarks run
