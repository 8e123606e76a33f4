"""The SYNTHETIC polyp generator: layout, determinism, safety, variety, difficulty, learnability."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from kdas_lite.data import (
    TEST_SETS,
    PolypDataset,
    PolypTestDataset,
    find_layout,
    image_mask_dirs,
    is_synthetic,
    make_synthetic_dataset,
    pair_files,
    read_image,
    read_mask,
)
from kdas_lite.data import synthetic as synthetic_module
from kdas_lite.errors import DataError

SIZE = 64


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "data", n_train=24,
                                  n_test=12, size=SIZE, seed=0)


def load_split(folder):
    pairs = pair_files(*image_mask_dirs(folder))
    return (np.stack([read_image(i) for i, _ in pairs]),
            np.stack([read_mask(m) for _, m in pairs]))


def test_writes_the_pranet_layout_with_marker(root):
    layout = find_layout(root)
    assert layout.kind == "pranet" and layout.synthetic and is_synthetic(root)
    assert list(layout.test) == list(TEST_SETS)
    assert len(pair_files(*image_mask_dirs(layout.train))) == 24
    for folder in layout.test.values():
        assert len(pair_files(*image_mask_dirs(folder))) == 12
    marker = (root / "SYNTHETIC.txt").read_text()
    assert "SYNTHETIC" in marker and "NOT real" in marker and '"n_train": 24' in marker
    image_path, mask_path = pair_files(*image_mask_dirs(layout.train))[0]
    assert image_path.suffix == ".jpg" and Image.open(image_path).size == (SIZE, SIZE)
    mask = np.asarray(Image.open(mask_path))
    assert mask_path.suffix == ".png" and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) == {0, 255}


def test_every_image_has_a_polyp_and_sizes_vary(root):
    _, masks = load_split(root / "TrainDataset")
    areas = masks.mean(axis=(1, 2))
    assert (areas > 0).all()
    assert areas.min() < 0.03 and areas.max() > 0.15  # small and large polyps
    components = [cv2.connectedComponents(m.astype(np.uint8))[0] - 1 for m in masks]
    assert max(components) >= 2  # some images show two polyps


def test_deterministic_and_independent_of_counts(tmp_path, root):
    other = make_synthetic_dataset(tmp_path / "b", n_train=5, n_test=0, size=SIZE, seed=0)
    for name in ("images/train_0000.jpg", "masks/train_0004.png"):
        assert (other / "TrainDataset" / name).read_bytes() == \
            (root / "TrainDataset" / name).read_bytes()
    assert not (other / "TestDataset").exists()
    reseeded = make_synthetic_dataset(tmp_path / "c", n_train=1, n_test=0, size=SIZE, seed=1)
    assert (reseeded / "TrainDataset/images/train_0000.jpg").read_bytes() != \
        (root / "TrainDataset/images/train_0000.jpg").read_bytes()


def test_rerun_is_a_no_op_and_nothing_is_overwritten(tmp_path):
    root = make_synthetic_dataset(tmp_path / "d", n_train=2, n_test=1, size=32,
                                  test_sets=("Kvasir",))
    stamp = (root / "SYNTHETIC.txt").stat().st_mtime_ns
    assert make_synthetic_dataset(root, n_train=2, n_test=1, size=32,
                                  test_sets=("Kvasir",)) == root
    assert (root / "SYNTHETIC.txt").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="other parameters"):
        make_synthetic_dataset(root, n_train=3, n_test=1, size=32, test_sets=("Kvasir",))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match="never overwritten"):
        make_synthetic_dataset(foreign, n_train=1)
    assert [p.name for p in foreign.iterdir()] == ["thesis.tex"]


def test_failure_leaves_no_half_written_folder(tmp_path, monkeypatch):
    calls = []

    def failing(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt  # e.g. the user stops the notebook mid-way
        return real(*args)

    real = synthetic_module._write_split
    monkeypatch.setattr(synthetic_module, "_write_split", failing)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic_dataset(tmp_path / "e", n_train=1, n_test=1, size=32)
    assert list(tmp_path.iterdir()) == []


def test_polyps_are_not_separable_by_one_channel_threshold(root):
    images, masks = load_split(root / "TrainDataset")
    best = 0.0
    for channel in range(3):
        values = images[..., channel]
        for threshold in range(0, 256, 8):
            for prediction in (values > threshold, values <= threshold):
                dice = 2 * (prediction & masks).sum() / (prediction.sum() + masks.sum())
                best = max(best, dice)
    assert best < 0.5, f"a single-channel threshold reaches Dice {best:.2f}: too easy"


def test_test_sets_have_their_own_style(root):
    kvasir, _ = load_split(root / "TestDataset/Kvasir")
    cvc300, _ = load_split(root / "TestDataset/CVC-300")
    _, etis_masks = load_split(root / "TestDataset/ETIS-LaribPolypDB")
    _, kvasir_masks = load_split(root / "TestDataset/Kvasir")

    def blue_over_red(images):
        return images[..., 2].mean() / images[..., 0].mean()

    assert blue_over_red(cvc300) < 0.92 * blue_over_red(kvasir)  # yellow cast
    assert etis_masks.mean() < 0.7 * kvasir_masks.mean()  # smaller polyps


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError):
        make_synthetic_dataset(tmp_path / "x", n_train=0)
    with pytest.raises(ValueError):
        make_synthetic_dataset(tmp_path / "x", size=16)


@pytest.mark.slow
def test_a_tiny_cnn_learns_it(tmp_path):
    """Learnable: a 4-layer CNN trained for a few seconds on 32-px images segments held-out
    polyps far better than the best single-channel threshold (Dice < 0.5 above)."""
    root = make_synthetic_dataset(tmp_path / "learn", n_train=96, n_test=32, size=32,
                                  test_sets=("Kvasir",))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is faster on a busy CPU
    try:
        torch.manual_seed(0)
        stats = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
        train = PolypDataset.from_folder(root / "TrainDataset", size=32, augment=True,
                                         cache="memory", **stats)
        layers: list[nn.Module] = [nn.Conv2d(3, 12, 3, padding=1), nn.ReLU()]
        for dilation in (2, 4, 8):
            layers += [nn.Conv2d(12, 12, 3, padding=dilation, dilation=dilation), nn.ReLU()]
        net = nn.Sequential(*layers, nn.Conv2d(12, 1, 1))
        optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
        loader = DataLoader(train, batch_size=16, shuffle=True)
        for _ in range(60):
            for image, mask in loader:
                logits = net(image)
                prob = torch.sigmoid(logits)
                soft_dice = (2 * (prob * mask).sum() + 1) / (prob.sum() + mask.sum() + 1)
                loss = F.binary_cross_entropy_with_logits(logits, mask) + 1 - soft_dice
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        test = PolypTestDataset(root / "TestDataset/Kvasir", size=32, **stats)
        inter = total = 0
        with torch.no_grad():
            for sample in test:
                pred = torch.sigmoid(net(sample["image"][None]))[0, 0].numpy() > 0.5
                inter += (pred & sample["mask"]).sum()
                total += pred.sum() + sample["mask"].sum()
    finally:
        torch.set_num_threads(threads)
    assert 2 * inter / total > 0.45
