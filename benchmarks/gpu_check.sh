#!/usr/bin/env bash
# The prepared GPU check of issue 21: CUDA tests, one epoch of teacher training and of KDAS
# distillation (offline EfficientNet-Lite pair, 352 px, fp32 and AMP), a torch.compile step
# and ONNX export verification; writes docs/bench/gpu.md. Needs no network.
#
#   python benchmarks/build_gpu_pack.py                  # where the data is: build/gpu_pack.tar
#   bash benchmarks/gpu_check.sh [--pack build/gpu_pack.tar] [--out docs/bench/gpu.md]
#   bash benchmarks/gpu_check.sh --dry-run               # CPU, tiny sizes, a few minutes
#
# PYTHON names the interpreter (default: python3). Exit status: 0 all steps ok, 1 a step
# failed or was skipped (the report says which and why), 2 the check could not start.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
missing=$("$PYTHON" - <<'PY'
import importlib.util
need = ("torch", "timm", "numpy", "scipy", "cv2", "albumentations", "PIL", "tqdm", "pytest",
        "matplotlib")
print(" ".join(name for name in need if importlib.util.find_spec(name) is None))
PY
)
if [ -n "$missing" ]; then
    echo "gpu_check: error: missing Python packages: $missing (install them, e.g." \
         "pip install -e '.[dev]' from a local wheel cache, or set PYTHON)" >&2
    exit 2
fi
# Only the ONNX step needs these; without them it is reported as failed, the rest runs.
"$PYTHON" -c "import onnx, onnxscript, onnxruntime" 2>/dev/null ||
    echo "gpu_check: note: onnx/onnxscript/onnxruntime missing: the ONNX step will fail" >&2
exec "$PYTHON" benchmarks/gpu_check.py "$@"
