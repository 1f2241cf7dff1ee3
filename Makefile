# afip-probe: `make test` and `make demo` work on a fresh machine (they set up .venv first).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
export TOKENIZERS_PARALLELISM = false

.PHONY: setup setup-vision browser test test-fast test-vision demo docs bench clean

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

# The geometry tests of the processors that need torchvision (LFM2-VL, Llama 4, Pixtral: tests marked
# `vision`) run in a second venv with a torch build that has a matching torchvision (the CUDA build on disk
# here; the project's CPU torch 2.13.0 has none). The main venv skips them, naming this target; `make test`
# runs them here, so CI never skips them.
VISION_VENV ?= .venv-vision
VPY := $(VISION_VENV)/bin/python

setup-vision: $(VISION_VENV)/.installed

$(VISION_VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VISION_VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	grep -v '^torch==' constraints.txt > $(VISION_VENV)/constraints.txt
	$(VPY) -m pip install -q -c $(VISION_VENV)/constraints.txt -e . pytest
	touch $@

# The vision venv has the project and pytest only: it collects the vision test module alone.
VISION_TESTS := tests/test_geometry_vision.py

test-vision: setup-vision
	AFIP_PROBE_VISION=1 $(VPY) -m pytest -q -m vision $(VISION_TESTS)

# The explorer tests drive a real headless Chromium (Debian's chromium + chromedriver): installed here when
# missing and this is root with apt-get (CI), else the tests say in one line how to install it.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "note: the explorer tests need Chromium: apt-get install chromium chromium-driver (as root)"; fi

# The main venv deselects the vision tests (no skips): the vision venv runs them.
test: setup browser setup-vision
	$(PY) -m pytest -q -m "not vision"
	AFIP_PROBE_VISION=1 $(VPY) -m pytest -q -m vision $(VISION_TESTS)

test-fast: setup browser
	$(PY) -m pytest -q -m "not slow"

demo: setup
	$(VENV)/bin/afip-probe demo --out demo-out --overwrite

# The documentation site (mkdocs.yml): the docs extra (mkdocs-material, mkdocstrings-python, mkdocs-jupyter,
# pinned in constraints.txt) goes into the project venv; --strict fails on any broken link, anchor or API
# reference. Open site/index.html, or serve it with `.venv/bin/mkdocs serve`.
docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -d site

$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml constraints.txt
	$(PY) -m pip install -q -c constraints.txt -e ".[docs]"
	touch $@

bench: setup
	$(PY) benchmarks/store_size.py
	$(PY) benchmarks/generation_cost.py
	$(PY) benchmarks/profile_tracing.py --tokens 512 --reps 2
	$(PY) benchmarks/memory_streaming.py
	$(PY) benchmarks/analysis_speed.py
	$(PY) benchmarks/explorer_size.py

clean:
	rm -rf $(VENV) $(VISION_VENV) demo-out site .pytest_cache
