# Two commands on a fresh machine: `make hls` (the whole pipeline on the default preset)
# and `make test`. Every target that needs the environment depends on `setup`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PRESET ?= default

.PHONY: setup hls test bench csim synth robustness report docs clean

setup: $(STAMP)

# Re-install only when pyproject.toml changed: quick when nothing did.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

hls: setup
	$(VENV)/bin/ccstae hls --config $(PRESET)

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/bench_simulate.py
	@for b in bench/bench_*.py; do [ $$b = bench/bench_simulate.py ] || $(PY) $$b; done

# Vendor flows: run only where vitis_hls / vivado_hls is on PATH, else say so and exit 0
# (`make csim REQUIRE=1`: a missing tool fails, for CI jobs that must not pass without it).
REQUIRE ?=
csim: setup
	$(VENV)/bin/ccstae vendor csim --config $(PRESET) $(if $(REQUIRE),--require)

synth: setup
	$(VENV)/bin/ccstae vendor synth --config $(PRESET) $(if $(REQUIRE),--require)

# Accuracy vs resources over firmware variants (configs/report.toml: quick, a few minutes;
# `make report SWEEP=sweep` runs the study on the default preset, configs/sweep.toml).
SWEEP ?= report
report: setup
	$(VENV)/bin/ccstae sweep --config $(SWEEP) --out reports/sweep-$(SWEEP)

# Which noise to train with: regimes x test levels, float / quantized / firmware vs py4DSTEM
# (configs/robustness-quick.toml: minutes; `make robustness STUDY=default`: the full grid).
STUDY ?= robustness-quick
JOBS  ?= 2
robustness: setup
	$(VENV)/bin/ccstae robustness --config $(STUDY) --out reports/robustness-$(STUDY) --jobs $(JOBS)

# The documentation (docs/, mkdocs.yml) built into site/; --strict fails on a broken link or nav entry.
docs: setup
	$(VENV)/bin/mkdocs build --strict -d site

clean:
	rm -rf hls_projects/*/ runs/ data/ reports/ .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
