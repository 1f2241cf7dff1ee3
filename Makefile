# afip-probe: `make test` and `make demo` work on a fresh machine (they set up .venv first).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export TOKENIZERS_PARALLELISM = false

.PHONY: setup browser test test-fast demo bench clean

setup: $(VENV)/.installed

# The CPU build of torch is installed first (pinned, it lies on disk here); the project's own
# torch range is then already satisfied, so no CUDA build is pulled in.
# constraints.txt pins the tested versions (transformers, torch, ...): what `make test` passes with.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	touch $@

# The explorer tests drive a real headless Chromium (Debian's chromium + chromedriver): installed here when
# missing and this is root with apt-get (CI), else the tests say in one line how to install it.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "note: the explorer tests need Chromium: apt-get install chromium chromium-driver (as root)"; fi

test: setup browser
	$(PY) -m pytest -q

test-fast: setup browser
	$(PY) -m pytest -q -m "not slow"

demo: setup
	$(VENV)/bin/afip-probe demo --out demo-out --overwrite

bench: setup
	$(PY) benchmarks/store_size.py
	$(PY) benchmarks/generation_cost.py
	$(PY) benchmarks/profile_tracing.py --tokens 512 --reps 2
	$(PY) benchmarks/memory_streaming.py
	$(PY) benchmarks/analysis_speed.py
	$(PY) benchmarks/explorer_size.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
