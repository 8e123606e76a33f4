# Thin wrappers around the project's scripts; see README.md and notebooks/README.md.
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: notebooks test lint demo

# Execute every notebook in order, in one new empty run folder (build/course/<run id>), at the
# CPU-lab scale on the real data, then render all pages, index.md and facts.json together into
# docs/notebooks/ (scripts/render_notebooks.py; --smoke for a small dry run outside docs/).
notebooks:
	$(PYTHON) scripts/render_notebooks.py --data real

# What CI runs: set-up, the notebooks (smoke), then pytest over tests/ and nbval.
test:
	bash scripts/test.sh

lint:
	$(PYTHON) -m ruff check .

# Synthetic (or real) data -> teacher -> KDAS student -> results table, a few CPU minutes.
demo:
	$(PYTHON) -m kdas_lite demo
