"""benchmarks/gpu_check.sh --dry-run passes on the CPU, and the GPU data pack stays ≤ 50 MiB."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from kdas_lite.data import (
    find_layout,
    find_shared_data,
    image_mask_dirs,
    make_synthetic_dataset,
    pair_files,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from build_gpu_pack import (  # noqa: E402
    MAX_MIB,
    PACK_DIR,
    TEST_SETS_PACKED,
    PackTooLarge,
    _encoded_pair,
    build_pack,
    main,
)


def test_dry_run_passes(tmp_path: Path) -> None:
    """The whole check on the CPU with tiny sizes: every step runs and is reported ok."""
    report = tmp_path / "gpu.md"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run",
                           "--out", str(report)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = report.read_text()
    assert text.startswith("# GPU check — DRY RUN on CPU") and "SYNTHETIC" in text
    for step in ("CUDA tests", "teacher fp32", "teacher AMP", "distill fp32", "distill AMP",
                 "torch.compile step", "ONNX export"):
        assert f"| {step} | ok |" in text, step


@pytest.fixture
def synthetic_root(tmp_path: Path) -> Path:
    return make_synthetic_dataset(tmp_path / "data", n_train=6, n_test=2, size=64,
                                  test_sets=TEST_SETS_PACKED)


def test_pack_builder_keeps_its_size_bound(synthetic_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pack.tar"
    with pytest.raises(PackTooLarge, match=r"over its 0\.01 MiB bound: lower --quality"):
        build_pack(synthetic_root, out, size=32, max_mib=0.01)
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == []  # nothing left behind
    manifest = build_pack(synthetic_root, out, size=32, max_mib=1.0)
    assert out.stat().st_size <= 2**20 and manifest["train_pairs"] == 6
    assert manifest["test_sets"] == {"Kvasir": 2, "CVC-ClinicDB": 2}
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "x")
    layout = find_layout(tmp_path / "x" / PACK_DIR)
    assert set(layout.test) == set(TEST_SETS_PACKED)
    assert layout.status["TrainDataset"].pairs == 6
    assert main(["--data", str(synthetic_root), "--out", str(tmp_path / "small.tar"),
                 "--max-mib", "0.01"]) == 2


@pytest.mark.realdata
def test_the_real_pack_fits_in_50_mib() -> None:
    """Re-encode a sample of the real training pairs and extrapolate: the pack of all 1450
    plus the two test sets copied as they are stays under the bound, with room to spare."""
    root = find_shared_data()
    if root is None or not (root / "TrainDataset").is_dir():
        pytest.skip("no real polyp data: ../shared/data is absent and KDAS_DATA is not set")
    pairs = pair_files(*image_mask_dirs(root / "TrainDataset"))
    sample = random.Random(0).sample(pairs, 30)
    per_pair = sum(len(a) + len(b) + 1024 for a, b in (_encoded_pair(*p, 352, 85)
                                                       for p in sample)) / len(sample)
    tests = sum(path.stat().st_size + 1024 for name in TEST_SETS_PACKED
                for pair in pair_files(*image_mask_dirs(root / "TestDataset" / name))
                for path in pair)
    estimate = (per_pair * len(pairs) + tests) / 2**20
    assert len(pairs) == 1450 and estimate < 0.9 * MAX_MIB, f"{estimate:.1f} MiB"
