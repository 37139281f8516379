# Two commands for a newcomer: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-from-lock
UV_VERSION := 0.13.9

.PHONY: install bytecode notebook-guard demo test bench chromium lock clean report lab

# The venv is installed from uv.lock (reproducible); uv itself is bootstrapped with pip. Bytecode is
# compiled at install, as pip does: otherwise, where PYTHONDONTWRITEBYTECODE is set (containers), every
# kl-sync process compiles its imports again (~12 s of CPU, most of it Great Expectations'; benchmark 8).
$(STAMP): pyproject.toml uv.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen --extra dev --inexact --quiet --compile-bytecode
	touch $(STAMP)

install: $(STAMP) bytecode notebook-guard

# The project's own modules get their bytecode too, every time (only what changed is compiled again,
# ~0.1 s): the editable install leaves kl_sync/ as source, and where PYTHONDONTWRITEBYTECODE is set
# every kl-sync process compiled its ~20,000 lines again (~0.1 s of CPU before the first request,
# and again in the store-reading process; benchmark 8). A file changed since is compiled in memory.
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 kl_sync flows benchmarks

# No notebook outputs (customer data) in git: a clean filter in this repository's git config, and a
# pre-save hook in the environment's Jupyter (kl_sync/analysis/strip.py says how each is found).
notebook-guard: $(STAMP)
	$(BIN)/python kl_sync/analysis/strip.py install

demo: $(STAMP) bytecode
	$(BIN)/kl-sync demo

test: install
	$(BIN)/python -m pytest

# The notebooks run headless, as HTML under the store's analysis folder (the demo's: .kl_sync/demo/analysis/).
report: install
	$(BIN)/python -m kl_sync.app.report

# JupyterLab on the notebooks (it refuses to run as root unless told it may).
lab: install
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

bench: $(STAMP) bytecode
	$(BIN)/python -m benchmarks

# Headless Chromium and its chromedriver for the browser test (tests/onsite/test_in_chromium.py), from
# Debian's packages only; `make test` skips that test without them, `.ci/run` installs them first.
CHROMIUM_PACKAGES := chromium chromium-driver
chromium:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" != 0 ]; then echo "make chromium: run as root, or: sudo apt-get install -y --no-install-recommends $(CHROMIUM_PACKAGES)" >&2; exit 1; \
	else apt-get install -y --no-install-recommends $(CHROMIUM_PACKAGES) \
	  || { apt-get update && apt-get install -y --no-install-recommends $(CHROMIUM_PACKAGES); }; fi

# Re-resolve the lock after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/uv lock

clean:
	rm -rf $(VENV) .kl_sync .pytest_cache
