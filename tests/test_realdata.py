"""The real polyp data in ../shared/data (or $KDAS_DATA), checked against its MANIFEST.json.

Skipped with the reason when the folder is absent (a user's clone). What runs in CI: counts and
statuses per set, checksums of a sample, masks that binarise to a real polyp, one forward pass
+ metrics per test set, a raw Kvasir-SEG folder split back into the PraNet Kvasir split, and a
tiny real-data train → distil → evaluate run (64 px) ending with ``kdas-lite evaluate``.
Nothing is written into the data folder.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from training_helpers import tiny_config

from kdas_lite.cli import main
from kdas_lite.data import (
    TEST_SETS,
    PolypTestDataset,
    find_layout,
    find_shared_data,
    image_mask_dirs,
    is_synthetic,
    pair_files,
    prepare_kvasir_split,
    read_mask,
)
from kdas_lite.evaluate import soft_maps
from kdas_lite.metrics import MetricAccumulator
from kdas_lite.models import build_student
from kdas_lite.train import distill, train_teacher

pytestmark = pytest.mark.realdata
SAMPLE = 8  # files per set for the checksum and mask checks


@pytest.fixture(scope="module")
def root() -> Path:
    found = find_shared_data()
    if found is None:
        pytest.skip("no real polyp data: ../shared/data is absent and KDAS_DATA is not set")
    if is_synthetic(found) or not (found / "MANIFEST.json").is_file():
        pytest.skip(f"{found} holds no MANIFEST.json of real data (synthetic stand-in?)")
    return found


@pytest.fixture(scope="module")
def manifest(root: Path) -> dict:
    return json.loads((root / "MANIFEST.json").read_text())["sets"]


def _sample(pairs: list, k: int = SAMPLE, seed: int = 0) -> list:
    return random.Random(seed).sample(pairs, min(k, len(pairs)))


def test_counts_and_statuses_match_the_manifest(root: Path, manifest: dict) -> None:
    layout = find_layout(root)
    assert set(layout.status) == set(manifest) and set(layout.test) == set(TEST_SETS)
    for name, entry in manifest.items():
        status = layout.status[name]
        assert (status.pairs, status.expected, status.status) == \
            (entry["pairs"], entry["expected"], entry["status"]), name
    assert layout.status["ETIS-LaribPolypDB"].label == "ETIS-LaribPolypDB (20/196)"
    assert layout.status["CVC-300"].label == "CVC-300 (inferred)"
    assert not layout.status["ETIS-LaribPolypDB"].comparable


def test_checksums_of_a_sample(root: Path) -> None:
    sums = dict(reversed(line.split(None, 1)) for line in
                (root / "SHA256SUMS").read_text().splitlines() if line.strip())
    sums = {path.strip(): digest for path, digest in sums.items()}
    for folder in ("TrainDataset", *(f"TestDataset/{name}" for name in TEST_SETS)):
        listed = sorted(p for p in sums if p.startswith(folder + "/"))
        assert listed, f"SHA256SUMS lists nothing under {folder}"
        for path in _sample(listed):
            digest = hashlib.sha256((root / path).read_bytes()).hexdigest()
            assert digest == sums[path], f"{path} differs from SHA256SUMS"


@pytest.mark.parametrize("name", ["TrainDataset", *TEST_SETS])
def test_masks_binarise_to_a_polyp(root: Path, name: str) -> None:
    folder = root / ("TrainDataset" if name == "TrainDataset" else f"TestDataset/{name}")
    for _, mask_path in _sample(pair_files(*image_mask_dirs(folder))):
        mask = read_mask(mask_path)
        assert 0 < mask.mean() < 1, f"{mask_path} binarises to an empty or full map"
    if name == "Kvasir":  # 3-channel JPEG masks: values near, not at, 0 and 255
        raw = np.asarray(Image.open(mask_path))
        assert raw.ndim == 3 and not set(np.unique(raw)) <= {0, 255}


def test_one_forward_pass_and_metrics_per_test_set(root: Path) -> None:
    torch.manual_seed(0)
    model = build_student().eval()
    for name in TEST_SETS:
        sample = PolypTestDataset(root / "TestDataset" / name, size=64)[0]
        with torch.inference_mode():
            p1, p2 = model(sample["image"][None])
        prob = soft_maps(p1 + p2, [sample["mask"].shape])[0]
        acc = MetricAccumulator()
        acc.add(prob, sample["mask"], label=f"{name}/{sample['name']}")
        scores = acc.result()
        assert prob.shape == sample["mask"].shape and 0 <= scores["meanDic"] <= 1, name


def test_raw_kvasir_release_splits_back_into_the_pranet_split(root: Path, tmp_path: Path) -> None:
    raw = tmp_path / "Kvasir-SEG"
    for sub in ("images", "masks"):
        (raw / sub).mkdir(parents=True)
    kvasir = [p for p in pair_files(*image_mask_dirs(root / "TrainDataset"))
              if not p[0].stem.isdigit()]
    kvasir += pair_files(*image_mask_dirs(root / "TestDataset" / "Kvasir"))
    assert len(kvasir) == 1000  # the whole Kvasir-SEG release
    for image, mask in kvasir:
        (raw / "images" / image.name).symlink_to(image)
        (raw / "masks" / mask.name).symlink_to(mask)
    layout = prepare_kvasir_split(raw, tmp_path)
    assert layout.status["Kvasir"].status == "complete"
    assert layout.status["TrainDataset"].pairs == 900
    shared = sorted(p.name for p in (root / "TestDataset/Kvasir/images").iterdir())
    assert sorted(p.name for p in (layout.test["Kvasir"] / "images").iterdir()) == shared


@pytest.mark.slow
def test_tiny_train_distil_evaluate_on_real_data(root: Path, tmp_path: Path, capsys) -> None:
    config = tiny_config(root, tmp_path / "run", max_train_images=6, max_val_images=2)
    teacher = train_teacher(config, progress=True)
    assert "train 6 of 1160 images (CVC-ClinicDB 2, Kvasir-SEG 4), val 2 of 290" in \
        capsys.readouterr().out
    student = distill(config, teacher.model, progress=False)
    assert student.best_path.is_file() and not teacher.synthetic
    status = main(["evaluate", str(student.best_path), "--data", str(root), "--image-size",
                   "64", "--quiet"])
    out = capsys.readouterr().out
    assert status == 0
    assert "| ETIS-LaribPolypDB (20/196) | 20 |" in out and "| CVC-300 (inferred) | 60 |" in out
    assert "| CVC-ColonDB | 380 |" in out and "SYNTHETIC" not in out
    assert "not comparable with published full-set scores" in out
