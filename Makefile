# tunelens: `make test` and `make demo` build .venv from nothing (Python 3.11, pip, no GPU, no model hub), installing
# exactly requirements/tunelens.lock: every package pinned with its hash, nothing resolved at install time.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo
LOCK := requirements/tunelens.lock
# Where pip finds torch 2.13.0+cpu: this machine's pip configuration already has it (/opt/wheels); elsewhere set it
# to PyTorch's CPU wheel page.
TORCH_FIND_LINKS ?=
FIND_TORCH := $(if $(TORCH_FIND_LINKS),--find-links $(TORCH_FIND_LINKS))

LAION_ENV := .laion-env
LATEST_ENV := .latest-env
LOCK_TOOL := .lock-tool
UV_VERSION := 0.13.10
# pytest in worker processes (pytest-xdist), a test file to each: a native crash (a segfault in a compiled dependency)
# fails the test it happened in, and xdist starts a new worker for the rest of the run.
TEST_WORKERS ?= 2
PYTEST := python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --max-worker-restart 20

.PHONY: install chromium laion-env test test-fast test-latest lock demo app serve clean

# A new lock (or Makefile) rebuilds .venv from nothing, so that nothing outside the lock stays installed.
$(VENV)/.installed: pyproject.toml $(LOCK) Makefile
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps $(FIND_TORCH) -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .   # tunelens itself, from this checkout
	$(BIN)/python scripts/check_lock.py --strict
	touch $@

install: $(VENV)/.installed

# Debian's Chromium for the end-to-end browser test of the app.
chromium:
	@command -v chromium >/dev/null || (DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium \
		|| (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium))

# The LAION-CLAP parity test's own environment: the original laion_clap code pins numpy<2, so it never enters .venv.
$(LAION_ENV)/.ready: tests/laion/make_env.sh requirements/laion.lock
	PYTHON=$(PYTHON) TORCH_FIND_LINKS=$(TORCH_FIND_LINKS) bash tests/laion/make_env.sh $(LAION_ENV)

laion-env: $(LAION_ENV)/.ready

test: install chromium laion-env
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 TUNELENS_LAION_ENV=$(abspath $(LAION_ENV)) $(BIN)/$(PYTEST) tests

# The canary: a throwaway environment from the newest releases pyproject.toml allows (torch held at the tested CPU
# build), the versions it resolved against the lock, and the fast tests. A failure here is a break users of
# `pip install tunelens` meet first; refresh the lock only once this passes (README, "Dependencies").
test-latest:
	rm -rf $(LATEST_ENV)
	$(PYTHON) -m venv $(LATEST_ENV)
	$(LATEST_ENV)/bin/pip install -q --upgrade pip
	grep '^torch==' requirements/constraints.txt > $(LATEST_ENV)/torch-constraint.txt
	$(LATEST_ENV)/bin/pip install -q $(FIND_TORCH) -c $(LATEST_ENV)/torch-constraint.txt --upgrade \
		--upgrade-strategy eager -e '.[cpu,ray,serve,beets,demo,test]'
	$(LATEST_ENV)/bin/pip install -q --no-deps --upgrade tinysoundfont
	$(LATEST_ENV)/bin/python scripts/check_lock.py --versions
	HF_HUB_OFFLINE=1 TUNELENS_LATEST=1 $(LATEST_ENV)/bin/$(PYTEST) -m "not slow" -p no:cacheprovider tests

# Re-resolve both locks from pyproject.toml's ranges with a pinned uv (requirements/lock.sh), then check the refresh
# with `make test` and `make test-latest`.
lock:
	rm -rf $(LOCK_TOOL)
	$(PYTHON) -m venv $(LOCK_TOOL)
	$(LOCK_TOOL)/bin/pip install -q uv==$(UV_VERSION)
	UV=$(LOCK_TOOL)/bin/uv TORCH_FIND_LINKS=$(TORCH_FIND_LINKS) bash requirements/lock.sh

test-fast: install
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/$(PYTEST) -m "not slow" tests

$(DEMO)/music/ground_truth.parquet: | install
	$(BIN)/python scripts/make_demo_corpus.py $(DEMO)/music

demo: install $(DEMO)/music/ground_truth.parquet
	HF_HUB_OFFLINE=1 $(BIN)/tunelens index $(DEMO)/music --library $(DEMO)/library
	@for q in "solo piano" "choir singing" "fast drums and percussion" "harpsichord" "flute melody"; do \
		HF_HUB_OFFLINE=1 $(BIN)/tunelens search "$$q" --library $(DEMO)/library -k 5; done

app: demo
	HF_HUB_OFFLINE=1 $(BIN)/tunelens caption --library $(DEMO)/library
	HF_HUB_OFFLINE=1 $(BIN)/tunelens app --library $(DEMO)/library

# The HTTP API on the demo library: http://127.0.0.1:8600/docs (loopback only; see docs/server.md).
serve: demo
	HF_HUB_OFFLINE=1 $(BIN)/tunelens caption --library $(DEMO)/library
	HF_HUB_OFFLINE=1 $(BIN)/tunelens serve --library $(DEMO)/library

clean:
	rm -rf $(VENV) $(LAION_ENV) $(LATEST_ENV) $(LOCK_TOOL) $(DEMO) .pytest_cache
