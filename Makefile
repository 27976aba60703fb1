# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when missing.
# `make test-cluster` (root; CI runs it after `make test`) runs the grids on a real SLURM and Ray.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# pytest-xdist workers (one test file per worker: module fixtures are built once); 0 runs in-process
PYTEST_WORKERS ?= 2
DEMO_URI ?= sqlite:///outputs/mlflow.db
DEMO_FIGURES ?= outputs/figures
DEMO_EXPORT ?= outputs/marl_eval.json

.PHONY: venv demo test test-fast test-cluster lint bench results clean

# Three stamps, each rebuilt when pyproject.toml or this file changes: .installed-core (torch and
# the package: what `make demo` imports), .installed (plus [dev] and marl-eval: what `make test`
# needs) and .installed-ray (plus [ray], for `make test-cluster`). torch goes first and pinned: an
# unpinned torch would pull a multi-GB CUDA build (override TORCH_SPEC for a CUDA wheel).
# marl-eval (tests/analysis/test_export.py reads our export with it) pins pandas==1.4.4, which does not
# build on current Pythons, so it goes in without its pins; what its data processing and plots
# import (colorama, colorcet, numpy, rliable, matplotlib, seaborn) comes with [dev].
MARL_EVAL_SPEC ?= id-marl-eval==0.0.4
$(VENV)/.installed-core: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed: $(VENV)/.installed-core
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps $(MARL_EVAL_SPEC)
	touch $@

$(VENV)/.installed-ray: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[dev,ray]"
	touch $@

venv: $(VENV)/.installed

# The demo grid is sweeps/demo.yaml (QMIX and MAC-PO, 2 seeds, budget=demo), two runs at a time.
demo: $(VENV)/.installed-core
	$(PY) -m macpo.train -m sweep=demo hydra/launcher=joblib logger.tracking_uri=$(DEMO_URI)
	$(PY) -m analysis.figures --tracking-uri $(DEMO_URI) --sweep demo --out $(DEMO_FIGURES)
	$(PY) -m analysis.export --tracking-uri $(DEMO_URI) --sweep demo --out $(DEMO_EXPORT)
	@echo
	@echo "Figure: $(DEMO_FIGURES)/fig2_predator_prey.png (tables and headlines in $(DEMO_FIGURES)/)"
	@echo "marl-eval file: $(DEMO_EXPORT)"
	@echo "MLflow store: $(DEMO_URI) (browse: $(VENV)/bin/mlflow ui --backend-store-uri $(DEMO_URI))"

# The results page (docs/results.md, figures in docs/results/) from the grid files in results/ alone:
# no training, no MLflow store. The files are written by `python -m analysis.results` (see the page).
RESULTS_DIR ?= results
RESULTS_PAGE ?= docs/results.md
results: venv
	$(PY) -m analysis.report $(RESULTS_DIR)/ --out $(RESULTS_PAGE) --readme README.md

test: venv
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

# tests/cluster (about 4 min; root): SLURM, MUNGE and MariaDB from apt-get and the [ray] extra from
# pip, installed when missing and at the same time; then the test in a private network namespace.
test-cluster: $(VENV)/.installed
	tests/cluster/install.sh & apt=$$!; \
	$(MAKE) --no-print-directory $(VENV)/.installed-ray || { wait $$apt; exit 1; }; wait $$apt
	PY=$(PY) tests/cluster/run.sh $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check macpo analysis tests

bench: venv
	$(PY) -m macpo.tools.bench

clean:
	rm -rf outputs/runs outputs/multirun outputs/figures outputs/marl_eval.json
