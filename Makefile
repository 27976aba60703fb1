# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when missing.
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

.PHONY: venv demo test test-fast lint bench results clean

# The stamp is rebuilt when pyproject.toml or this file changes. torch goes first and pinned: an
# unpinned torch would pull a multi-GB CUDA build (override TORCH_SPEC for a CUDA wheel).
# marl-eval (tests/analysis/test_export.py reads our export with it) pins pandas==1.4.4, which does not
# build on current Pythons, so it goes in without its pins; what its data processing and plots
# import (colorama, colorcet, numpy, rliable, matplotlib, seaborn) comes with [dev].
MARL_EVAL_SPEC ?= id-marl-eval==0.0.4
$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps $(MARL_EVAL_SPEC)
	touch $@

venv: $(VENV)/.installed

# The demo grid is sweeps/demo.yaml (QMIX and MAC-PO, 2 seeds, budget=demo), two runs at a time.
demo: venv
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
	$(PY) -m analysis.report $(RESULTS_DIR)/ --out $(RESULTS_PAGE)

test: venv
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: venv
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check macpo analysis tests

bench: venv
	$(PY) -m macpo.tools.bench

clean:
	rm -rf outputs/runs outputs/multirun outputs/figures outputs/marl_eval.json
