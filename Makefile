# Thin wrappers around the project's scripts; see README.md and notebooks/README.md.
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: notebooks test lint demo

# Execute the notebooks at the CPU-lab scale and render them as HTML into docs/notebooks/.
notebooks:
	$(PYTHON) scripts/render_notebooks.py

# What CI runs: set-up, the notebooks (smoke), then pytest over tests/ and nbval.
test:
	bash scripts/test.sh

lint:
	$(PYTHON) -m ruff check .

# Synthetic (or real) data -> teacher -> KDAS student -> results table, a few CPU minutes.
demo:
	$(PYTHON) -m kdas_lite demo
