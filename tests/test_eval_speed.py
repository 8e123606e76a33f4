"""Evaluation in seconds (issue 21): same scores as before, from the cache and the threads.

- every measure of :mod:`kdas_lite.metrics` equals the frozen code of main before the change
  (``benchmarks/eval_baseline.py``) to 1e-9, on synthetic cases built to hit the edges
  (border polyps, distances past the importance table, ties, 8-bit maps, constant and nearly
  constant maps, blocks of a single class), each as a float64 and as a float32 map, and on a
  sample of the real test sets (``realdata``);
- the parts that replaced a library call give exactly its answer: the float32 threshold
  levels (``searchsorted``) and the nearest foreground pixel of wFm's band (SciPy's feature
  transform, ties included);
- scoring in threads gives exactly the scores of one thread;
- the test-set cache gives bit-identical samples, lives outside the data folder, and is
  rebuilt when a file changes.
"""

from __future__ import annotations

import os
import pickle
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from kdas_lite.data import (
    TEST_SETS,
    PolypTestDataset,
    find_shared_data,
    image_mask_dirs,
    pair_files,
    read_image,
    read_mask,
)
from kdas_lite.evaluate import evaluate
from kdas_lite.metrics import CURVE_NAMES, METRIC_NAMES, MetricAccumulator
from kdas_lite.metrics._common import _check_pair
from kdas_lite.metrics.scoring import _score
from kdas_lite.metrics.thresholded import _ASCENDING, _levels
from kdas_lite.metrics.weighted_f import _PAD, _propagate_error

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import eval_baseline

TOL = 1e-9


def _assert_same_as_before(pred: np.ndarray, gt: np.ndarray, what: str) -> None:
    # The library scores float32 maps as float32 (keep_float32); the baseline always read float64.
    new = _score(*_check_pair(pred, gt, keep_float32=True))
    old = eval_baseline.score(*_check_pair(pred, gt))
    for name in METRIC_NAMES:
        assert abs(new[name] - old[name]) <= TOL, f"{what}: {name} {new[name]} vs {old[name]}"
    for name in CURVE_NAMES:
        np.testing.assert_allclose(new["curves"][name], old["curves"][name], rtol=0, atol=TOL,
                                   err_msg=f"{what}: {name} curve")


def _soft(gt: np.ndarray, rng: np.random.Generator, blur: float = 3.0) -> np.ndarray:
    soft = ndimage.gaussian_filter(gt.astype(np.float64), blur) * rng.uniform(0.5, 1.0)
    return np.clip(soft + rng.uniform(0, 0.3, gt.shape), 0, 1)


def _synthetic_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(21)
    yy, xx = np.mgrid[:60, :80]
    blob = ((yy - 30) / 12) ** 2 + ((xx - 35) / 18) ** 2 < 1
    two = blob | (((yy - 8) / 5) ** 2 + ((xx - 70) / 6) ** 2 < 1)
    border = (yy < 10) & (xx > 50)  # touches the top and right edges
    far = np.zeros((40, 620), bool)
    far[18:22, 3:6] = True  # most pixels lie beyond the importance table (d ≥ 200)
    one = np.zeros((30, 30), bool)
    one[15, 15] = True
    ring = (np.hypot(yy - 30, xx - 40) < 20) & (np.hypot(yy - 30, xx - 40) > 10)  # ties
    cases = {name: (_soft(g, rng), g) for name, g in
             (("blob", blob), ("two blobs", two), ("border", border), ("far", far),
              ("one pixel", one), ("ring", ring))}
    cases["8-bit"] = (np.round(_soft(blob, rng) * 255) / 255, blob)
    cases["float32 min-max"] = (((p := _soft(two, rng).astype(np.float32)) - p.min())
                                / (p.max() - p.min() + np.float32(1e-8)), two)
    cases["random"] = (rng.random((33, 47)), rng.random((33, 47)) > 0.7)
    cases["empty mask"] = (_soft(blob, rng), np.zeros_like(blob))
    cases["full mask"] = (_soft(blob, rng), np.ones_like(blob))
    cases["perfect"] = (blob.astype(np.float64), blob)
    cases["zeros"] = (np.zeros(blob.shape), blob)
    cases["transposed"] = (_soft(two, rng).T, two.T)  # non-contiguous views
    cases["constant"] = (np.full(blob.shape, 0.3), blob)
    cases["nearly constant"] = (0.6 + 1e-7 * rng.random(blob.shape), blob)  # tiny variances
    quadrant = (yy < 40) & (xx < 50)  # the top-left block is all foreground
    cases["single-class blocks"] = (np.where(yy < 40, 0.8, 0.2), quadrant)
    cases["0/1 uint8 map"] = (blob.astype(np.uint8), blob)
    corner = np.zeros((700, 650), bool)
    corner[5:20, 8:30] = True  # most pixels are beyond 200 below and to the right
    cases["corner, large"] = (_soft(corner, rng), corner)
    return cases


CASES = _synthetic_cases()


@pytest.mark.parametrize("dtype", ["as built", "float32"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_measure_equals_the_code_before(case: str, dtype: str) -> None:
    pred, gt = CASES[case]
    if dtype == "float32":  # float32 maps take their own paths (levels, no float64 copy)
        if pred.dtype != np.float64:
            return  # already float32 (or 8-bit): tested as built
        pred = pred.astype(np.float32)
    _assert_same_as_before(pred, gt, what=f"{case} ({dtype})")


def test_float32_levels_count_the_thresholds_exactly() -> None:
    k = np.arange(256) / 255
    near = np.concatenate([  # every float32 next to each k/255, and the edges of [0, 1]
        np.nextafter(k.astype(np.float32), np.float32(-1)),
        k.astype(np.float32),
        np.nextafter(k.astype(np.float32), np.float32(2)),
        np.float32([0, 1, 1e-30, 2**-8, 2**-8 - 2**-32, np.nextafter(np.float32(1), 0)]),
        np.random.default_rng(0).random(100_000, dtype=np.float32),
    ]).clip(0, 1).astype(np.float32)
    expected = np.searchsorted(_ASCENDING, near.astype(np.float64), side="right") - 1
    np.testing.assert_array_equal(_levels(near.reshape(1, -1))[0], expected)


def test_band_error_is_the_nearest_foreground_pixels_as_scipy_picks_it() -> None:
    """wFm's E_t near G equals SciPy's feature transform's, on masks full of equidistant
    foreground pixels (random dots, lattices, thin rings, masks at the border)."""
    rng = np.random.default_rng(5)
    for trial in range(400):
        h, w = rng.integers(1, 40, 2)
        yy, xx = np.mgrid[:h, :w]
        kind = trial % 4
        if kind == 0:
            g = rng.random((h, w)) < rng.uniform(0.01, 0.6)
        elif kind == 1:
            r = np.hypot(yy - rng.uniform(0, h), xx - rng.uniform(0, w))
            radius = rng.uniform(1, 15)
            g = (r < radius) & (r >= radius * rng.uniform(0, 0.9))
        elif kind == 2:
            g = np.zeros((h, w), bool)
            g[rng.integers(0, h, 3), rng.integers(0, w, 3)] = True
        else:
            g = (yy % rng.integers(2, 7) == 0) & (xx % rng.integers(2, 7) == 0)
        if not g.any():
            continue
        error = rng.random((h, w))
        near_r, near_c = ndimage.distance_transform_edt(~g, return_distances=False,
                                                        return_indices=True)
        got = _propagate_error(np.pad(error, _PAD), np.pad(g, _PAD))[_PAD:-_PAD, _PAD:-_PAD]
        reach = ndimage.binary_dilation(g, np.ones((7, 7), bool))  # what the 7×7 kernel reads
        np.testing.assert_array_equal(got[reach], error[near_r, near_c][reach])
        assert not got[~reach].any()


@pytest.mark.realdata
def test_every_measure_equals_the_code_before_on_real_masks() -> None:
    root = find_shared_data()
    if root is None or not (root / "TestDataset").is_dir():
        pytest.skip("no real polyp data: ../shared/data is absent and KDAS_DATA is not set")
    rng = np.random.default_rng(0)
    for name in TEST_SETS:
        pairs = pair_files(*image_mask_dirs(root / "TestDataset" / name))
        for image_path, mask_path in random.Random(0).sample(pairs, 2):
            gt = read_mask(mask_path)
            red = read_image(image_path)[:, :, 0].astype(np.float32) / 255
            # A map like a model's: the mask blurred and shifted, the image's red channel.
            soft = np.roll(_soft(gt, rng, blur=6.0), (5, -7), axis=(0, 1)) * 0.7 + 0.3 * red
            pred = ((soft - soft.min()) / (soft.max() - soft.min() + 1e-8)).astype(np.float32)
            _assert_same_as_before(pred, gt, what=f"{name}/{image_path.name}")


# ---------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------
def test_threads_give_exactly_the_scores_of_one_thread() -> None:
    pairs = [CASES[c] for c in ("blob", "two blobs", "border", "ring", "far", "random")] * 2
    serial, threaded = MetricAccumulator(), MetricAccumulator(workers=3)
    for pred, gt in pairs:
        serial.add(pred, gt)
        threaded.submit(pred, gt)
    assert len(threaded) == len(pairs)
    assert threaded.result(per_image=True)["per_image"][4]["wFm"] == serial.result(
        per_image=True)["per_image"][4]["wFm"]
    assert threaded.result() == serial.result()
    threaded.submit(*CASES["blob"])  # streaming on after a result
    serial.add(*CASES["blob"])
    assert threaded.result() == serial.result()


def test_a_bad_pair_is_named_when_submitted() -> None:
    acc = MetricAccumulator(workers=2)
    acc.submit(*CASES["blob"], label="ok")
    with pytest.raises(ValueError, match=r"set/frame7.*\[0, 1\]"):
        acc.submit(CASES["blob"][0] * 2, CASES["blob"][1], label="set/frame7")
    acc.close()
    assert len(acc) == 1 and acc.result()["wFm"] > 0
    with pytest.raises(ValueError, match="workers"):
        MetricAccumulator(workers=0)


# ---------------------------------------------------------------------------------------------
# The test-set cache
# ---------------------------------------------------------------------------------------------
def _write_set(folder: Path, shapes: list[tuple[int, int]], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for i, (h, w) in enumerate(shapes):
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4: h // 2, w // 3: w - 2] = 255
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / "images" / f"{i:02d}.jpg", quality=90)
        Image.fromarray(mask).save(folder / "masks" / f"{i:02d}.png")
    return folder


def _listing(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_cached_samples_are_bit_identical_and_outside_the_data(tmp_path: Path) -> None:
    folder = _write_set(tmp_path / "data" / "Kvasir", [(37, 53), (64, 48), (29, 29)])
    before = _listing(tmp_path / "data")
    plain = PolypTestDataset(folder, size=24)
    cached = PolypTestDataset(folder, size=24, cache_dir=tmp_path / "cache")
    assert cached.cache_files is not None
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()
                  if not p.name.startswith("file-hashes")) == sorted(
        name for p in cached.cache_files for name in (p.name, p.name + ".sha256")
    )  # two files and their checksums, no temporary left
    for i in range(len(plain)):
        a, b = plain[i], cached[i]
        assert torch.equal(a["image"], b["image"]) and a["name"] == b["name"]
        assert b["mask"].dtype == bool and np.array_equal(a["mask"], b["mask"])
    again = pickle.loads(pickle.dumps(cached))  # as a DataLoader worker gets it
    assert np.array_equal(again[1]["mask"], plain[1]["mask"])
    assert _listing(tmp_path / "data") == before  # nothing written into the data folder
    with pytest.raises(ValueError, match="inside the data folder"):
        PolypTestDataset(folder, size=24, cache_dir=folder / "cache")


def test_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path: Path, monkeypatch) -> None:
    folder = _write_set(tmp_path / "data" / "CVC-300", [(40, 40), (30, 50)])
    cache = tmp_path / "cache"
    first = PolypTestDataset(folder, size=16, cache_dir=cache).cache_files
    monkeypatch.setattr("kdas_lite.data.dataset.read_pair",
                        lambda *a: pytest.fail("a warm cache decodes nothing"))
    assert PolypTestDataset(folder, size=16, cache_dir=cache).cache_files == first
    monkeypatch.undo()
    assert PolypTestDataset(folder, size=20, cache_dir=cache).cache_files[1] == first[1]

    mask_path = folder / "masks" / "01.png"
    Image.fromarray(np.full((30, 50), 255, np.uint8)).save(mask_path)  # the whole frame
    changed = PolypTestDataset(folder, size=16, cache_dir=cache)
    assert changed.cache_files[1] != first[1] and changed.cache_files[0] == first[0]
    assert changed[1]["mask"].all()
    os.utime(folder / "images" / "00.jpg", ns=(1, 1))  # same bytes, new mtime: same cache
    assert PolypTestDataset(folder, size=16, cache_dir=cache).cache_files[0] == first[0]


def test_an_unreadable_cache_file_is_rebuilt(tmp_path: Path) -> None:
    folder = _write_set(tmp_path / "data" / "Kvasir", [(20, 30)])
    images_file, masks_file = PolypTestDataset(folder, size=8, cache_dir=tmp_path).cache_files
    masks_file.write_bytes(b"not a zip")
    images_file.write_bytes(b"not an array")
    with pytest.warns(UserWarning, match="rebuilding"):
        dataset = PolypTestDataset(folder, size=8, cache_dir=tmp_path)
    assert np.array_equal(dataset[0]["mask"], PolypTestDataset(folder, size=8)[0]["mask"])


class _Red(torch.nn.Module):
    """A one-parameter 'model': the red channel as logits, for both heads."""

    input_mean = (0.5, 0.5, 0.5)
    input_std = (0.5, 0.5, 0.5)

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(3.0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.scale * x[:, :1]
        return logit, logit


def test_evaluate_scores_the_same_with_cache_and_threads(tmp_path: Path) -> None:
    sets = {"Kvasir": _write_set(tmp_path / "Kvasir", [(40, 50), (33, 27), (50, 50)], seed=1),
            "CVC-300": _write_set(tmp_path / "CVC-300", [(45, 60)], seed=2)}
    kwargs = {"size": 16, "batch_size": 2, "progress": False}
    plain = evaluate(_Red(), sets, workers=1, cache=False, **kwargs)
    fast = evaluate(_Red(), sets, workers=2, cache_dir=tmp_path / "cache", **kwargs)
    warm = evaluate(_Red(), sets, workers=2, cache_dir=tmp_path / "cache", **kwargs)
    assert plain.rows == fast.rows == warm.rows
    assert len([p for p in (tmp_path / "cache").iterdir()
                if p.suffix in (".npy", ".npz")]) == 4  # images + masks, per set
