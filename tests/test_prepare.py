"""Raw Kvasir-SEG → PraNet split, test images kept out of training, course data resolution,
set statuses and seeded representative subsets. Offline: tiny images made here, a download
from a server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from training_helpers import tiny_config

from kdas_lite.data import (
    DataWarning,
    SetStatus,
    course_data,
    find_layout,
    pranet_kvasir_test_names,
    prepare_kvasir_split,
    set_status,
    subsample,
    training_source,
)
from kdas_lite.errors import DataError
from kdas_lite.train import build_dataloaders

TEST_NAMES = sorted(pranet_kvasir_test_names())[:3]
TRAIN_NAMES = [f"cju{k:04d}trainonly" for k in range(6)]


def _write_pair(folder: Path, stem: str, value: int = 200) -> None:
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    image = np.full((16, 16, 3), value, np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    Image.fromarray(image).save(folder / "images" / f"{stem}.jpg")
    Image.fromarray(mask).save(folder / "masks" / f"{stem}.jpg")


def raw_kvasir(folder: Path) -> Path:
    """A raw Kvasir-SEG look-alike: 6 training names and 3 PraNet test names (9 different
    images: identical ones would be test images by content, :func:`leaked_test_images`)."""
    for k, stem in enumerate(TRAIN_NAMES + TEST_NAMES):
        _write_pair(folder, stem, value=20 + 10 * k)
    return folder


def test_the_shipped_test_names_are_the_pranet_kvasir_test_set():
    names = pranet_kvasir_test_names()
    assert len(names) == 100 and all(n.startswith("cj") and len(n) == 25 for n in names)


def test_prepare_builds_the_split_and_a_manifest(tmp_path):
    raw = raw_kvasir(tmp_path / "data" / "Kvasir-SEG")
    layout = prepare_kvasir_split(raw, tmp_path / "data")
    assert layout.kind == "pranet" and list(layout.test) == ["Kvasir"]
    train = sorted(p.stem for p in (layout.train / "images").iterdir())
    test = sorted(p.stem for p in (layout.test["Kvasir"] / "images").iterdir())
    assert train == TRAIN_NAMES and test == TEST_NAMES
    assert (layout.train / "images" / f"{TRAIN_NAMES[0]}.jpg").stat().st_nlink == 2  # linked
    assert layout.status["Kvasir"] == SetStatus("Kvasir", 3, 100, "partial")
    assert layout.status["TrainDataset"].status == "partial"
    manifest = json.loads((tmp_path / "data" / "MANIFEST.json").read_text())
    assert manifest["sets"]["TrainDataset"]["pairs"] == 6
    assert prepare_kvasir_split(raw, tmp_path / "data") == layout  # again: returns at once
    assert not list((tmp_path / "data").glob(".kvasir-split.*"))  # scratch folder removed


def test_prepare_refuses_to_overwrite_a_foreign_split(tmp_path):
    raw = raw_kvasir(tmp_path / "raw")
    _write_pair(tmp_path / "root" / "TrainDataset", "mine")
    with pytest.raises(DataError, match=r"TrainDataset already exist.*another folder"):
        prepare_kvasir_split(raw, tmp_path / "root")
    other = tmp_path / "other"
    _write_pair(other, "not-kvasir")
    with pytest.raises(DataError, match="is not Kvasir-SEG"):
        prepare_kvasir_split(other, tmp_path / "out")


def test_raw_kvasir_training_never_sees_the_test_images(tmp_path, capsys):
    raw = raw_kvasir(tmp_path / "Kvasir-SEG")
    layout = find_layout(tmp_path)
    assert layout.kind == "kvasir-seg" and set(TEST_NAMES) <= layout.exclude
    config = tiny_config(tmp_path, tmp_path / "runs", max_train_images=None,
                         max_val_images=None, cache="none")
    train, val, _ = build_dataloaders(config, (0.5,) * 3, (0.25,) * 3, progress=True)
    used = {p[0].stem for p in train.dataset.pairs + val.dataset.pairs}
    assert used == set(TRAIN_NAMES)  # every training image, no test image
    assert "3 PraNet test images left out" in capsys.readouterr().out
    assert raw.is_dir()


def test_run_header_counts_a_representative_subset(tmp_path, capsys):
    root = tmp_path / "pranet"
    for k in range(1, 31):  # 30 numbered ClinicDB-like frames sort before the Kvasir names
        _write_pair(root / "TrainDataset", str(k))
    for k in range(20):
        _write_pair(root / "TrainDataset", f"cju{k:04d}kvasir")
    config = tiny_config(root, tmp_path / "runs", max_train_images=10, max_val_images=5,
                         val_fraction=0.2, cache="none")
    train, _, _ = build_dataloaders(config, (0.5,) * 3, (0.25,) * 3, progress=True)
    sources = Counter(training_source(p[0]) for p in train.dataset.pairs)
    assert sources == {"CVC-ClinicDB": 6, "Kvasir-SEG": 4}  # 60/40 as in the folder
    header = capsys.readouterr().out
    assert "train 10 of 40 images (CVC-ClinicDB 6, Kvasir-SEG 4), val 5 of 10" in header


def test_subsample_is_seeded_proportional_and_sorted():
    pairs = [(Path(f"{k}.png"), Path(f"{k}.png")) for k in range(1, 61)]
    pairs += [(Path(f"cju{k}.jpg"), Path(f"cju{k}.jpg")) for k in range(40)]
    draw = subsample(pairs, 10, seed=3)
    assert draw == sorted(draw) and len(set(draw)) == 10
    assert Counter(training_source(p[0]) for p in draw) == {"CVC-ClinicDB": 6, "Kvasir-SEG": 4}
    assert draw == subsample(list(reversed(pairs)), 10, seed=3)  # input order is irrelevant
    assert draw != subsample(pairs, 10, seed=4)
    assert subsample(pairs, None) == sorted(pairs) == subsample(pairs, 1000)


def test_set_status_from_counts_and_manifest(tmp_path):
    folder = tmp_path / "TestDataset" / "ETIS-LaribPolypDB"
    for k in range(3):
        _write_pair(folder, str(k))
    assert set_status("ETIS-LaribPolypDB", folder).label == "ETIS-LaribPolypDB (3/196)"
    assert set_status("my-hospital", folder) == SetStatus("my-hospital", 3, None, "complete")
    manifest = {"sets": {"ETIS-LaribPolypDB": {"status": "inferred", "note": "n"}}}
    (tmp_path / "MANIFEST.json").write_text(json.dumps(manifest))
    # fewer files than the benchmark stay "partial" whatever the manifest claims
    assert set_status("ETIS-LaribPolypDB", folder).status == "partial"
    (tmp_path / "MANIFEST.json").write_text("{not json")
    with pytest.raises(DataError, match=r"MANIFEST\.json is not a data manifest"):
        set_status("ETIS-LaribPolypDB", folder)


def test_more_pairs_than_the_benchmark_is_an_error_naming_the_files(tmp_path):
    folder = tmp_path / "TestDataset" / "Kvasir"
    for stem in sorted(pranet_kvasir_test_names()):
        _write_pair(folder, stem)
    assert set_status("Kvasir", folder).status == "complete"
    _write_pair(folder, "holiday-photo")
    with pytest.raises(DataError, match=r"101 image/mask pairs but Kvasir has 100.*"
                                        r"holiday-photo\.jpg"):
        set_status("Kvasir", folder)


def _zip_of(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*.jpg")):
            archive.write(path, f"Kvasir-SEG/{path.relative_to(folder)}")
    return buffer.getvalue()


def test_course_data_downloads_and_splits_kvasir(no_local_data, file_server, capsys):
    served, base = file_server
    (served / "kvasir-seg.zip").write_bytes(_zip_of(raw_kvasir(no_local_data / "src")))
    with pytest.warns(DataWarning, match="has 9 images, the registry expects 1000"):
        layout = course_data(url=f"{base}/kvasir-seg.zip", progress=False)
    assert layout.root == Path("data") and not layout.synthetic
    assert layout.status["Kvasir"].label == "Kvasir (3/100)"
    assert sorted(p.stem for p in (layout.train / "images").iterdir()) == TRAIN_NAMES
    assert "data: data (real data); test sets: Kvasir (3/100)" in capsys.readouterr().out
    # Next time the data is on disk: no download (the server is not asked again).
    (served / "kvasir-seg.zip").unlink()
    assert course_data(url=f"{base}/kvasir-seg.zip", progress=False) == layout


def test_course_data_offline_falls_back_to_announced_synthetic(no_local_data, capsys):
    closed = "http://127.0.0.1:9/kvasir-seg.zip"  # discard port: connection refused
    layout = course_data(url=closed, synthetic_root=no_local_data / "syn", synthetic_images=4,
                         synthetic_size=32, n_test_images=1, progress=False)
    assert layout.synthetic
    out = capsys.readouterr().out
    assert "no network to download Kvasir-SEG: using the SYNTHETIC stand-in" in out
    with pytest.raises(DataError, match="downloading Kvasir-SEG failed"):
        course_data(use_synthetic=False, url=closed, progress=False)
    with pytest.raises(DataError, match="does not exist"):
        course_data(no_local_data / "typo", url=closed)
    forced = course_data(use_synthetic=True, synthetic_root=no_local_data / "syn",
                         synthetic_images=4, synthetic_size=32, n_test_images=1)
    assert forced.synthetic and "no network" not in capsys.readouterr().out


def test_course_data_splits_a_raw_folder_on_disk(tmp_path):
    raw_kvasir(tmp_path / "Kvasir-SEG")
    layout = course_data(tmp_path)
    assert layout.kind == "pranet" and layout.status["Kvasir"].pairs == 3


def test_cli_download_splits_and_prepare(no_local_data, file_server, capsys):
    from kdas_lite.cli import main

    served, base = file_server
    (served / "kvasir-seg.zip").write_bytes(_zip_of(raw_kvasir(no_local_data / "src")))
    status = main(["download", "kvasir-seg", "--data", "dl", "--url",
                   f"{base}/kvasir-seg.zip", "--quiet"])
    out, err = capsys.readouterr()
    assert "kdas-lite: warning: dl/Kvasir-SEG has 9 images, the registry expects 1000" in err
    assert status == 0 and "TrainDataset 6 images, TestDataset/Kvasir Kvasir (3/100)" in out
    assert find_layout(no_local_data / "dl").kind == "pranet"
    raw_kvasir(no_local_data / "by-hand" / "Kvasir-SEG")
    assert main(["prepare", str(no_local_data / "by-hand" / "Kvasir-SEG")]) == 0
    assert (no_local_data / "by-hand" / "TestDataset" / "Kvasir" / "images").is_dir()
    assert main(["prepare", str(no_local_data / "nowhere")]) == 2
    assert "nowhere has no images/ or masks/" in capsys.readouterr().err


def test_cli_evaluate_names_the_missing_test_sets(tmp_path, capsys):
    import torch

    from kdas_lite.checkpoint_files import save_checkpoint
    from kdas_lite.cli import main
    from kdas_lite.models import build_student
    from kdas_lite.train import CHECKPOINT_FORMAT

    root = tmp_path / "data"
    _write_pair(root / "TrainDataset", "1")
    for k in range(2):
        _write_pair(root / "TestDataset" / "CVC-300", str(k))
    torch.manual_seed(0)
    model = build_student()
    ckpt = save_checkpoint({"format": CHECKPOINT_FORMAT, "role": "student", "arch": model.config(),
                            "model": model.state_dict()}, tmp_path / "s.pth")
    assert main(["evaluate", str(ckpt), "--data", str(root), "--image-size", "64",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert ("evaluating the 1 test sets present under " in out and "missing: Kvasir, "
            "CVC-ClinicDB, CVC-ColonDB, ETIS-LaribPolypDB" in out)
    assert "| CVC-300 (2/60) | 2 |" in out
    assert main(["evaluate", str(ckpt), "--data", str(root), "--sets", "Kvasir"]) == 2
    assert "Kvasir not found" in capsys.readouterr().err
