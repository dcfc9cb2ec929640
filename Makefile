# tunelens: `make test` and `make demo` build .venv from nothing (Python 3.11, pip, no GPU, no model hub).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo

LAION_ENV := .laion-env

.PHONY: install chromium laion-env test test-fast demo app serve clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0          # the CPU wheel on this machine's disk; installed first so nothing pulls another build
	$(BIN)/pip install -q -e '.[cpu,ray,serve,beets,demo,test]'   # tunelens[gpu] instead of [cpu] on a CUDA machine
	$(BIN)/pip install -q --no-deps tinysoundfont  # its PyAudio dependency is only for live playback
	touch $@

install: $(VENV)/.installed

# Debian's Chromium for the end-to-end browser test of the app.
chromium:
	@command -v chromium >/dev/null || (DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium \
		|| (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium))

# The LAION-CLAP parity test's own environment: the original laion_clap code pins numpy<2, so it never enters .venv.
$(LAION_ENV)/.ready: tests/laion/make_env.sh tests/laion/requirements.txt
	PYTHON=$(PYTHON) bash tests/laion/make_env.sh $(LAION_ENV)

laion-env: $(LAION_ENV)/.ready

test: install chromium laion-env
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 TUNELENS_LAION_ENV=$(abspath $(LAION_ENV)) $(BIN)/python -m pytest -q tests

test-fast: install
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow" tests

$(DEMO)/music/ground_truth.parquet: | install
	$(BIN)/python scripts/make_demo_corpus.py $(DEMO)/music

demo: install $(DEMO)/music/ground_truth.parquet
	HF_HUB_OFFLINE=1 $(BIN)/tunelens index $(DEMO)/music --library $(DEMO)/library
	@for q in "solo piano" "choir singing" "fast drums and percussion" "harpsichord" "flute melody"; do \
		HF_HUB_OFFLINE=1 $(BIN)/tunelens search "$$q" --library $(DEMO)/library -k 5; done

app: demo
	HF_HUB_OFFLINE=1 $(BIN)/tunelens caption --library $(DEMO)/library
	HF_HUB_OFFLINE=1 $(BIN)/tunelens app --library $(DEMO)/library

# The HTTP API on the demo library: http://127.0.0.1:8600/docs (loopback only; see README "Server").
serve: demo
	HF_HUB_OFFLINE=1 $(BIN)/tunelens caption --library $(DEMO)/library
	HF_HUB_OFFLINE=1 $(BIN)/tunelens serve --library $(DEMO)/library

clean:
	rm -rf $(VENV) $(LAION_ENV) $(DEMO) .pytest_cache
