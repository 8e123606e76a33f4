#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set-up, then every notebook executed with
# papermill at smoke size (fails on any failing cell; notebook 02 also with the PVTv2 pair),
# then pytest over the unit tests and the notebooks under nbval (--nbval-lax: only cells
# marked "# NBVAL_CHECK_OUTPUT" are compared).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export MPLBACKEND=Agg PYTHONUNBUFFERED=1
.venv/bin/python scripts/run_notebooks.py --output build/notebooks
.venv/bin/python scripts/run_notebooks.py --params smoke-pvt --only 02 --output build/notebooks-pvt
.venv/bin/python scripts/run_notebooks.py --prepare-only --output build/nbval
.venv/bin/python -m pytest tests build/nbval --nbval-lax -p no:cacheprovider "$@"
