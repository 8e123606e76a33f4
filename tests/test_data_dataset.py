"""PolypDataset / PolypTestDataset, augmentation alignment, cache, split, layout, registry."""

from __future__ import annotations

import os

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from kdas_lite.data import (
    DATASETS,
    TEST_SETS,
    PolypDataset,
    PolypTestDataset,
    SharedRandomCompose,
    build_eval_transform,
    build_resize,
    build_train_transform,
    collate_test,
    find_layout,
    image_mask_dirs,
    pair_files,
    registry,
    resolve_data_root,
    train_val_split,
)
from kdas_lite.data import dataset as dataset_module
from kdas_lite.errors import DataError

SIZE = 32


def write_folder(folder, count=6, shape=(48, 64), seed=0):
    """``count`` random non-square JPEG images with a rectangle mask each (PNG 0/255)."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir(parents=True)
    for i in range(count):
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        mask = np.zeros(shape, np.uint8)
        y, x = rng.integers(0, shape[0] // 2), rng.integers(0, shape[1] // 2)
        mask[y:y + shape[0] // 3, x:x + shape[1] // 4] = 255
        Image.fromarray(image).save(folder / "images" / f"case{i}.jpg", quality=90)
        Image.fromarray(mask).save(folder / "masks" / f"case{i}.png")
    return folder


@pytest.fixture
def folder(tmp_path):
    return write_folder(tmp_path / "set")


@pytest.fixture
def pairs(folder):
    return pair_files(*image_mask_dirs(folder))


# ---------------------------------------------------------------- PolypDataset


def test_training_sample_shapes_and_values(pairs):
    dataset = PolypDataset(pairs, size=SIZE, augment=True)
    assert len(dataset) == 6
    image, mask = dataset[0]
    assert image.dtype == torch.float32 and image.shape == (3, SIZE, SIZE)
    assert mask.dtype == torch.float32 and mask.shape == (1, SIZE, SIZE)
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and mask.sum() > 0
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch[0].shape == (2, 3, SIZE, SIZE) and batch[1].shape == (2, 1, SIZE, SIZE)


def test_eval_sample_is_normalised_resize(pairs):
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    image, _ = PolypDataset(pairs, size=SIZE, mean=mean, std=std)[0]
    raw = np.asarray(Image.open(pairs[0][0]).convert("RGB"))
    resized = build_resize(SIZE)(image=raw)["image"].astype(np.float32) / 255
    expected = (resized - np.array(mean, np.float32)) / np.array(std, np.float32)
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("bad", ["True", "False", 1, None])
def test_augment_must_be_a_real_bool(pairs, bad):
    # The reference code compared a bool to the string 'True', so it never augmented.
    with pytest.raises(TypeError, match="augment must be a bool"):
        PolypDataset(pairs, size=SIZE, augment=bad)


def test_invalid_arguments(pairs):
    with pytest.raises(ValueError, match="cache"):
        PolypDataset(pairs, size=SIZE, cache="ram")
    with pytest.raises(DataError, match="empty"):
        PolypDataset([], size=SIZE)
    with pytest.raises(ValueError, match="size"):
        PolypDataset(pairs, size=0)


def test_from_folder_and_missing_subfolder(folder, tmp_path):
    assert len(PolypDataset.from_folder(folder, size=SIZE)) == 6
    (tmp_path / "only_images" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="masks/"):
        PolypDataset.from_folder(tmp_path / "only_images")


def test_bad_file_fails_with_its_name(folder):
    (folder / "images" / "case3.jpg").write_bytes(b"\xff\xd8\xff broken")
    dataset = PolypDataset.from_folder(folder, size=SIZE)
    with pytest.raises(DataError, match=r"case3\.jpg"):
        dataset[3]
    with pytest.raises(DataError, match=r"case3\.jpg"):  # the cache reads every file up front
        PolypDataset.from_folder(folder, size=SIZE, cache="memory")


def test_augmentation_is_seeded_and_not_identity(pairs):
    torch.manual_seed(123)
    first = [PolypDataset(pairs, size=SIZE, augment=True)[i][1] for i in range(6)]
    torch.manual_seed(123)
    again = [PolypDataset(pairs, size=SIZE, augment=True)[i][1] for i in range(6)]
    plain = [PolypDataset(pairs, size=SIZE)[i][1] for i in range(6)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert sum(not torch.equal(a, p) for a, p in zip(first, plain, strict=True)) >= 3


# ---------------------------------------------------------------- augmentation alignment


def near_boundary(mask):
    """Pixels with a differently labelled pixel in their 3x3 neighbourhood."""
    padded = np.pad(mask, 1, mode="edge")
    height, width = mask.shape
    return np.any([padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width] != mask
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)


def test_train_transform_moves_image_and_mask_together():
    """The red channel encodes the mask; after any augmentation they must still agree
    everywhere except on the one-pixel bands (mask edge, image frame) where bilinear and
    nearest resampling legitimately differ."""
    mask = np.zeros((40, 56), np.uint8)
    mask[4:20, 6:18] = 1  # an off-centre L-shape: every flip/rotation changes it
    mask[20:34, 6:12] = 1
    image = np.full((40, 56, 3), 60, np.uint8)
    image[..., 0] = 55 + 200 * mask
    transform = build_train_transform(SIZE, mean=(0, 0, 0), std=(1, 1, 1))
    reference = build_resize(SIZE)(image=image, mask=mask)["mask"]
    changed = 0
    for seed in range(40):
        transform.set_random_seed(seed)
        out = transform(image=image, mask=mask)
        red, moved = out["image"][0].numpy(), out["mask"].numpy()
        assert set(np.unique(moved).tolist()) <= {0, 1}  # nearest resampling: still binary
        disagree = ((red > 0.5) != moved.astype(bool)) & ~near_boundary(moved)
        disagree = disagree[1:-1, 1:-1]  # the outer frame mixes image and black fill too
        assert not disagree.any(), f"seed {seed}: image and mask disagree at {disagree.sum()} px"
        changed += not np.array_equal(moved, reference)
    assert changed >= 30  # geometric augmentation really happened in most draws
    # the check is sensitive: a mask flipped on its own would disagree with the image
    flipped = np.ascontiguousarray(moved[:, ::-1])
    assert (((red > 0.5) != flipped.astype(bool)) & ~near_boundary(flipped)).sum() > 20


def test_seeded_transform_draws_are_independent():
    """albumentations 2.0 seeds each child with the same seed (flips then always coincide);
    SharedRandomCompose gives them one stream: all four flip combinations must occur."""
    image = np.arange(4, dtype=np.uint8).reshape(2, 2)
    transform = SharedRandomCompose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)], seed=3)
    outcomes = {tuple(transform(image=image)["image"].ravel().tolist()) for _ in range(40)}
    assert outcomes == {(0, 1, 2, 3), (1, 0, 3, 2), (2, 3, 0, 1), (3, 2, 1, 0)}
    assert isinstance(build_train_transform(SIZE), SharedRandomCompose)
    transform.set_random_seed(5)
    first = [transform(image=image)["image"].tolist() for _ in range(8)]
    transform.set_random_seed(5)
    assert [transform(image=image)["image"].tolist() for _ in range(8)] == first


def test_eval_transform_is_deterministic():
    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    mask = np.zeros((30, 50), np.uint8)
    transform = build_eval_transform(SIZE)
    a, b = transform(image=image, mask=mask), transform(image=image, mask=mask)
    assert torch.equal(a["image"], b["image"]) and a["image"].shape == (3, SIZE, SIZE)


def test_workers_do_not_repeat_each_others_augmentations(pairs):
    same = [pairs[0]] * 8  # one image, so any difference comes from the random draws
    dataset = PolypDataset(same, size=SIZE, augment=True)

    def run():
        torch.manual_seed(0)
        loader = DataLoader(dataset, batch_size=1, num_workers=2)
        return [mask for _, mask in loader]

    masks = run()
    worker0, worker1 = masks[0::2], masks[1::2]  # batches alternate between the workers
    assert any(not torch.equal(a, b) for a, b in zip(worker0, worker1, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(masks, run(), strict=True))  # reproducible


# ---------------------------------------------------------------- cache


@pytest.mark.parametrize("augment", [False, True])
def test_cache_modes_give_identical_samples(pairs, tmp_path, augment):
    samples = {}
    for cache in ("none", "memory", "disk"):
        torch.manual_seed(7)
        dataset = PolypDataset(pairs, size=SIZE, augment=augment, cache=cache,
                               cache_dir=tmp_path / "cache")
        samples[cache] = [dataset[i] for i in range(len(dataset))]
    for cache in ("memory", "disk"):
        for (image, mask), (ref_image, ref_mask) in zip(samples[cache], samples["none"],
                                                        strict=True):
            assert torch.equal(image, ref_image) and torch.equal(mask, ref_mask)


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_cache_progress_bar_can_be_silenced(pairs, tmp_path, capsys, cache):
    PolypDataset(pairs, size=SIZE, cache=cache, cache_dir=tmp_path / "quiet", progress=False)
    assert capsys.readouterr().err == ""
    PolypDataset(pairs, size=SIZE, cache=cache, cache_dir=tmp_path / "loud")
    assert f"caching {SIZE}px" in capsys.readouterr().err


def test_disk_cache_is_reused_and_invalidated(pairs, tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    first = PolypDataset(pairs, size=SIZE, cache="disk", cache_dir=cache_dir)
    assert first.cache_file.parent == cache_dir and first.cache_file.is_file()
    assert sorted(p.name for p in cache_dir.iterdir() if not p.name.startswith("file-hashes")) \
        == [first.cache_file.name, first.cache_file.name + ".sha256"]  # no temp left

    def no_reading(*args):
        raise AssertionError("the cache should have been reused")

    with monkeypatch.context() as patch:
        patch.setattr(dataset_module, "read_pair", no_reading)
        again = PolypDataset(pairs, size=SIZE, cache="disk", cache_dir=cache_dir)
        again[0]
    assert again.cache_file == first.cache_file
    os.utime(pairs[2][1], ns=(1, 1))  # same bytes, another mtime: the same cache
    assert PolypDataset(pairs, size=SIZE, cache="disk", cache_dir=cache_dir).cache_file == \
        first.cache_file
    pairs[2][1].write_bytes(pairs[3][1].read_bytes())  # other bytes: the key changes
    assert PolypDataset(pairs, size=SIZE, cache="disk", cache_dir=cache_dir).cache_file != \
        first.cache_file
    assert PolypDataset(pairs, size=SIZE + 8, cache="disk", cache_dir=cache_dir).cache_file != \
        first.cache_file


def test_disk_cache_survives_pickling_for_spawned_workers(pairs, tmp_path):
    import pickle

    dataset = PolypDataset(pairs, size=SIZE, cache="disk", cache_dir=tmp_path)
    dataset[0]  # opens the memory map
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._cache is None  # the map is not copied into the pickle ...
    assert torch.equal(clone[1][0], dataset[1][0])  # ... but re-opened on first use


# ---------------------------------------------------------------- soft masks (paper preset)


def _fractional(mask):
    return ((mask > 0) & (mask < 1)).sum().item()


def test_soft_masks_are_fractional_only_at_edges_and_binary_by_default(pairs):
    # 48×64 source -> 32×32: the bilinear resize blends rows/columns along the rectangle's edges.
    binary = PolypDataset(pairs, size=SIZE)[0][1]
    soft = PolypDataset(pairs, size=SIZE, soft_masks=True)[0][1]
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    assert soft.min() >= 0 and soft.max() <= 1 and _fractional(soft) > 0
    # Fractional values lie where the binary mask changes within one pixel, nowhere else.
    edge = torch.nn.functional.max_pool2d(binary, 3, 1, 1) != -torch.nn.functional.max_pool2d(
        -binary, 3, 1, 1)
    assert (((soft > 0) & (soft < 1)) <= edge).all()
    assert torch.equal(soft[~edge], binary[~edge])
    assert ((soft > 0.5).float() - binary).abs().mean() < 0.05  # the same polyp


@pytest.mark.parametrize("augment", [False, True])
def test_soft_masks_are_the_same_through_every_cache(pairs, tmp_path, augment):
    samples = {}
    for cache in ("none", "memory", "disk"):
        torch.manual_seed(7)
        dataset = PolypDataset(pairs, size=SIZE, augment=augment, cache=cache, soft_masks=True,
                               cache_dir=tmp_path / "cache")
        samples[cache] = [dataset[i][1] for i in range(len(dataset))]
    assert sum(_fractional(mask) for mask in samples["none"]) > 0
    for cache in ("memory", "disk"):
        assert all(torch.equal(a, b) for a, b in zip(samples[cache], samples["none"], strict=True))
    binary = PolypDataset(pairs, size=SIZE, cache="disk", cache_dir=tmp_path / "cache")
    soft = PolypDataset(pairs, size=SIZE, cache="disk", cache_dir=tmp_path / "cache",
                        soft_masks=True)
    assert binary.cache_file != soft.cache_file  # a binary cache is never read as soft
    assert set(binary[0][1].unique().tolist()) <= {0.0, 1.0}


def test_multi_scale_rescale_keeps_soft_masks_soft():
    from kdas_lite import train

    masks = torch.zeros(1, 1, 64, 64)
    masks[..., 10:40, 20:50] = 1
    images = torch.randn(1, 3, 64, 64)
    assert set(train._rescale(images, masks, 96)[1].unique().tolist()) <= {0.0, 1.0}
    soft = train._rescale(images, masks, 96, soft=True)[1]
    assert _fractional(soft) > 0 and soft.min() >= 0 and soft.max() <= 1


def test_build_dataloaders_gives_soft_masks_to_training_only(tmp_path):
    from kdas_lite.config import get_preset
    from kdas_lite.train import build_dataloaders

    write_folder(tmp_path / "data", count=6)
    config = get_preset("smoke", data_root=str(tmp_path / "data"), image_size=SIZE,
                        augment=False, cache="none", soft_masks=True, val_fraction=0.3)
    train_loader, val_loader, _ = build_dataloaders(config, (0.5,) * 3, (0.5,) * 3,
                                                    progress=False)
    assert train_loader.dataset.soft_masks and not val_loader.dataset.soft_masks
    assert _fractional(next(iter(train_loader))[1]) > 0
    assert set(next(iter(val_loader))[1].unique().tolist()) <= {0.0, 1.0}


# ---------------------------------------------------------------- test dataset


def test_test_dataset_keeps_original_mask_and_collates(tmp_path):
    folder = write_folder(tmp_path / "CVC-300", count=3, shape=(40, 56))
    dataset = PolypTestDataset(folder, size=SIZE)
    assert dataset.name == "CVC-300" and len(dataset) == 3
    sample = dataset[1]
    assert set(sample) == {"image", "mask", "name"}
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, SIZE, SIZE)
    assert sample["mask"].dtype == bool and sample["mask"].shape == (40, 56)
    assert sample["name"] == "case1"
    batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_test)))
    assert batch["image"].shape == (2, 3, SIZE, SIZE)
    assert [m.shape for m in batch["mask"]] == [(40, 56), (40, 56)]
    assert batch["name"] == ["case0", "case1"]


# ---------------------------------------------------------------- split


def test_train_val_split_is_deterministic_and_disjoint(tmp_path):
    pairs = [(tmp_path / f"images/{i}.jpg", tmp_path / f"masks/{i}.png") for i in range(50)]
    train, val = train_val_split(pairs, val_fraction=0.1, seed=0)
    assert len(val) == 5 and len(train) == 45
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(pairs)
    shuffled = [pairs[i] for i in np.random.default_rng(1).permutation(50)]
    assert train_val_split(shuffled, val_fraction=0.1, seed=0) == (train, val)
    assert train_val_split(pairs, val_fraction=0.1, seed=1)[1] != val
    assert train_val_split(pairs[:3], val_fraction=0.1)[1] != []  # at least one when >= 2
    assert train_val_split(pairs[:1], val_fraction=0.1) == (pairs[:1], [])
    assert train_val_split(pairs, val_fraction=0.0) == (sorted(pairs), [])
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(pairs, val_fraction=1.0)
    with pytest.raises(DataError):
        train_val_split([], val_fraction=0.1)


# ---------------------------------------------------------------- layout and registry


def test_find_layout_pranet(tmp_path):
    write_folder(tmp_path / "TrainDataset", count=2)
    for name in ("CVC-300", "Kvasir"):
        write_folder(tmp_path / "TestDataset" / name, count=1)
    layout = find_layout(tmp_path)
    assert layout.kind == "pranet" and layout.train == tmp_path / "TrainDataset"
    assert list(layout.test) == ["Kvasir", "CVC-300"]  # paper order, only those present
    assert layout.synthetic is False


@pytest.mark.parametrize("nested", ["", "Kvasir-SEG"])
def test_find_layout_raw_kvasir_seg(tmp_path, nested):
    write_folder(tmp_path / nested if nested else tmp_path, count=1)
    layout = find_layout(tmp_path)
    assert layout.kind == "kvasir-seg" and layout.test == {}
    assert layout.train == (tmp_path / nested if nested else tmp_path)


def test_find_layout_explains_what_is_expected(tmp_path):
    with pytest.raises(DataError, match=r"(?s)TrainDataset/images.*Kvasir-SEG"):
        find_layout(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        find_layout(tmp_path / "missing")


def test_resolve_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("KDAS_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "given") == tmp_path / "given"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("KDAS_DATA")
    monkeypatch.setattr(registry, "find_shared_data", lambda: None)
    assert resolve_data_root() == registry.Path("data")


def test_registry_counts_match_the_paper():
    assert TEST_SETS == ("Kvasir", "CVC-ClinicDB", "CVC-ColonDB", "CVC-300",
                         "ETIS-LaribPolypDB")
    assert [DATASETS[name].num_images for name in TEST_SETS] == [100, 62, 380, 60, 196]
    assert DATASETS["TrainDataset"].num_images == 900 + 550
    raw = DATASETS["kvasir-seg"]
    assert raw.num_images == 1000 and raw.url == "https://datasets.simula.no/downloads/kvasir-seg.zip"
    assert raw.sha256 is None  # unknown: documented, downloads are not verified
    for info in DATASETS.values():
        assert info.homepage.startswith("https://") and info.license and info.citation
