#!/usr/bin/env bash
# Set up kdas_lite on a fresh machine: a virtual environment in .venv with PyTorch, the package
# (editable) and its dev + offline-weights extras, and a Jupyter kernel for the notebooks.
# Idempotent: a second run only checks that everything is installed.
#   PYTHON=python3.11 bash scripts/bootstrap.sh     # choose the interpreter (>= 3.10)
#   KDAS_FRESH=1 bash scripts/bootstrap.sh          # delete .venv first (what CI does)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${KDAS_TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}

if [ "${KDAS_FRESH:-0}" = "1" ]; then rm -rf .venv; fi
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv with $($PY --version 2>&1)"
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  echo "[bootstrap] installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  "${PIP[@]}" install $TORCH_SPEC
fi
echo "[bootstrap] installing kdas-lite[dev,offline-weights] (editable)"
"${PIP[@]}" install -e ".[dev,offline-weights]"
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
.venv/bin/python -c "import kdas_lite, torch; print('[bootstrap] kdas_lite', kdas_lite.__version__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available())"
