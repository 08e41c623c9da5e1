# The two commands a fresh machine needs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-all sysdeps bench-deps bench clean

venv: $(STAMP)

# torch first, pinned: the CPU wheel of 2.13.0 is on this machine's disk, while a bare `torch`
# requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian packages: the aarch64 cross-compiler (ARM export) and Chromium (kaleido renders the PNG
# figures with it). Root on this machine; apt-get update first.
SYSDEPS := gcc-aarch64-linux-gnu:aarch64-linux-gnu-gcc chromium:chromium
sysdeps:
	@missing=""; for dep in $(SYSDEPS); do command -v $${dep#*:} >/dev/null 2>&1 || missing="$$missing $${dep%%:*}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (sudo apt-get install$$missing; their tests will skip)"; fi; \
	fi

# The main job on the embedded default: search demo-cnn for this host's x86 profile, with
# recovery: trials that would join the front are fine-tuned briefly (--promote finetune), and
# points that stay under 90% even so are infeasible (a 50%-pruned demo scores 92% after those 40
# steps and 98% after an export's 150: a floor at the fp32 baseline's 98.5% would drop it).
demo: venv
	$(BIN)/automc search --promote finetune --min-accuracy 0.9

test: venv sysdeps
	$(BIN)/python -m pytest -q -rs

test-all: venv sysdeps
	$(BIN)/python -m pytest -q -rs -m ""

# Extra packages of experiments/backends.py (torchao); torch stays pinned.
bench-deps: venv
	$(BIN)/pip install -q -e '.[dev,bench]' torch==2.13.0

# What users pick instead of automc, measured here (experiments/README.md).
bench: bench-deps
	$(BIN)/python experiments/backends.py

clean:
	rm -rf $(VENV) runs .pytest_cache
