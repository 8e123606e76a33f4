"""Hostile data folders (issue 17): test images inside the training folder, a resumed run on
other data, FIFOs among the images, archives with too many members, scratch folders of killed
downloads, a root with test sets only, and everything that can go wrong in ``prepare``.

Offline and small: 16-px images written here, downloads from a server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from training_helpers import tiny_config

from kdas_lite.data import (
    DataWarning,
    download_dataset,
    find_layout,
    make_synthetic_dataset,
    pair_files,
    pranet_kvasir_test_names,
    prepare_kvasir_split,
    safe_extract,
)
from kdas_lite.errors import CheckpointError, DataError, DownloadError
from kdas_lite.train import build_dataloaders, fit

TEST_NAMES = sorted(pranet_kvasir_test_names())[:3]
OWN = [f"cju{k:04d}trainonly" for k in range(4)]


def write_pair(folder: Path, stem: str, value: int = 200) -> None:
    """A 16-px JPEG image of uniform grey ``value`` and its square PNG mask."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(folder / "images" / f"{stem}.jpg")
    Image.fromarray(mask).save(folder / "masks" / f"{stem}.png")


def esc(path: Path) -> str:
    """``path`` as a regular expression that matches it literally."""
    return re.escape(str(path))


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: SIGALRM interrupts a blocking open() of a FIFO."""
    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s (blocked on a FIFO?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def student_checkpoint(tmp_path_factory) -> Path:
    import torch

    from kdas_lite.checkpoint_files import save_checkpoint
    from kdas_lite.models import build_student
    from kdas_lite.train import CHECKPOINT_FORMAT

    torch.manual_seed(0)
    model = build_student()
    return save_checkpoint({"format": CHECKPOINT_FORMAT, "role": "student",
                            "arch": model.config(), "model": model.state_dict()},
                           tmp_path_factory.mktemp("ckpt") / "s.pth")


# ------------------------------------------------------------ 1. no test image trained on


def test_a_pranet_training_folder_never_trains_on_test_images(tmp_path, capsys):
    root = tmp_path / "data"
    train, tests = root / "TrainDataset", root / "TestDataset"
    for k, stem in enumerate(OWN):
        write_pair(train, stem, 10 + 10 * k)
    write_pair(train, "1", 60)  # a ClinicDB id; ColonDB's "1" below is another image: kept
    write_pair(tests / "CVC-ColonDB", "1", 70)
    for stem in TEST_NAMES[:2]:  # PraNet Kvasir test names (only one of them on disk)
        write_pair(train, stem, 80)
    write_pair(tests / "Kvasir", TEST_NAMES[0], 80)
    write_pair(train, "5", 90)  # a ClinicDB test id, by name
    write_pair(tests / "CVC-ClinicDB", "5", 90)
    write_pair(tests / "CVC-ColonDB", "7", 100)  # a ColonDB test image renamed: by content
    shutil.copy(tests / "CVC-ColonDB" / "images" / "7.jpg", train / "images" / "copy7.jpg")
    shutil.copy(tests / "CVC-ColonDB" / "masks" / "7.png", train / "masks" / "copy7.png")

    with pytest.warns(DataWarning, match=r"TrainDataset holds 4 test images.*left out"):
        layout = find_layout(root)
    assert layout.exclude == {TEST_NAMES[0], TEST_NAMES[1], "5", "copy7"}
    config = tiny_config(root, tmp_path / "runs", max_train_images=None, max_val_images=None,
                         cache="none")
    with pytest.warns(DataWarning):
        loaders = build_dataloaders(config, (0.5,) * 3, (0.25,) * 3, progress=True)
    used = {p[0].stem for loader in loaders[:2] for p in loader.dataset.pairs}
    assert used == {*OWN, "1"}
    assert "4 test images left out" in capsys.readouterr().out


def test_the_shared_data_has_no_test_image_in_training():
    from kdas_lite.data import find_shared_data

    shared = find_shared_data()
    if shared is None or not (shared / "TrainDataset").is_dir():
        pytest.skip("no real data here")
    assert find_layout(shared).exclude == frozenset()


class TwoMaps(torch.nn.Module):
    """A tiny "segmenter" (a 1×1 conv, two logit maps) that trains in milliseconds."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p1, p2 = self.conv(x).split(1, dim=1)
        return p1, p2


def test_resume_on_other_data_is_refused(tmp_path):
    first = make_synthetic_dataset(tmp_path / "a", n_train=6, n_test=0, size=64, seed=0)
    other = make_synthetic_dataset(tmp_path / "b", n_train=6, n_test=0, size=64, seed=1)
    config = tiny_config(first, tmp_path / "runs", epochs=2, cache="none")
    fit(TwoMaps(), config, role="teacher", stop_after_epoch=1, progress=False)
    refused = rf"trained on {esc(first)}.*given now is {esc(other)}"
    with pytest.raises(CheckpointError, match=refused):
        fit(TwoMaps(), config.replace(data_root=str(other)), role="teacher", resume=True,
            progress=False)
    from kdas_lite.runs import data_identity

    moved = shutil.copytree(first, tmp_path / "moved")  # the same files elsewhere: resumable
    identity = [data_identity(root, pair_files(root / "TrainDataset" / "images",
                                               root / "TrainDataset" / "masks"))
                for root in (first, moved, other)]
    assert identity[0]["sha256"] == identity[1]["sha256"] != identity[2]["sha256"]


# ------------------------------------------------------------ 7. non-regular files


def test_a_fifo_among_the_images_is_skipped_and_named(tmp_path, student_checkpoint, capsys):
    from kdas_lite.cli import main

    root = tmp_path / "data"
    write_pair(root / "TrainDataset", "100")
    for k in range(2):
        write_pair(root / "TestDataset" / "CVC-300", str(k))
    os.mkfifo(root / "TestDataset" / "CVC-300" / "images" / "9.png")
    os.mkfifo(root / "TestDataset" / "CVC-300" / "masks" / "9.png")
    with deadline(30):
        assert main(["evaluate", str(student_checkpoint), "--data", str(root),
                     "--image-size", "64", "--quiet"]) == 0
        out, err = capsys.readouterr()
        assert "| CVC-300 (2/60) | 2 |" in out and "9.png (not a regular file)" in err
        with pytest.warns(DataWarning, match=r"9\.png \(not a regular file\)"):
            assert len(pair_files(root / "TestDataset" / "CVC-300" / "images",
                                  root / "TestDataset" / "CVC-300" / "masks")) == 2


# ------------------------------------------------------------ 8. archives and scratch folders


def _zip_declaring(members: int) -> bytes:
    """A valid zip of ``members`` empty files (zip64 end record), built without zipfile."""
    local, central = bytearray(), bytearray()
    for k in range(members):
        name = f"f{k}".encode()
        offset = len(local)
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0,
                             len(name), 0) + name
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0,
                               len(name), 0, 0, 0, 0, 0, offset) + name
    start, size = len(local), len(central)
    zip64_at = start + size
    end = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, members, members, size,
                      start)
    end += struct.pack("<4sLQL", b"PK\x06\x07", 0, zip64_at, 1)
    end += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                       0xFFFFFFFF, 0)
    return bytes(local + central + end)


def test_an_archive_with_too_many_members_is_refused_before_writing(tmp_path, monkeypatch):
    from kdas_lite.data.download import MAX_MEMBERS

    archive = tmp_path / "many.zip"
    archive.write_bytes(_zip_declaring(100_000))
    assert len(zipfile.ZipFile(archive).infolist()) == 100_000  # a real 100k-member zip
    assert MAX_MEMBERS < 100_000
    parsed = []
    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents",
                        lambda self: parsed.append(1) or pytest.fail("directory parsed"))
    with pytest.raises(DownloadError, match=r"100000 members, more than the limit of"):
        safe_extract(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.zip"] and not parsed
    small = tmp_path / "small.zip"
    small.write_bytes(_zip_declaring(30))
    monkeypatch.undo()
    with pytest.raises(DownloadError, match=r"max_members"):
        safe_extract(small, tmp_path / "out", max_members=20)
    assert len(list(safe_extract(small, tmp_path / "out").iterdir())) == 30


def test_scratch_folders_of_a_killed_download_are_removed_on_the_next_run(file_server, tmp_path):
    from kdas_lite.data.download import _exclusive

    served, base = file_server
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Kvasir-SEG/images/a.jpg", b"i")
        archive.writestr("Kvasir-SEG/masks/a.jpg", b"m")
    (served / "k.zip").write_bytes(buffer.getvalue())
    root = tmp_path / "data"
    stale = root / ".kvasir-seg.k3x_9q2a.download"
    (stale / "unpacked").mkdir(parents=True)
    (stale / ".archive.zip.0a1b2c3d4e5f.part").write_bytes(b"x" * 1000)
    mine = [root / ".kvasir-seg.notes", root / ".kvasir-seg.a.download.txt",
            root / ".CVC-300.k3x_9q2a.download"]  # not this download's scratch pattern
    for path in mine:
        path.mkdir()
    busy = r"another kdas-lite process is writing into"
    # While a download runs elsewhere (it holds the lock), its scratch folder is not touched.
    with _exclusive(root, "a test"), pytest.raises(DownloadError, match=busy):
        download_dataset("kvasir-seg", root, url=f"{base}/k.zip", progress=False)
    assert stale.is_dir()
    with pytest.warns(DataWarning, match=r"removed .*\.kvasir-seg\.k3x_9q2a\.download"):
        download_dataset("kvasir-seg", root, url=f"{base}/k.zip", progress=False)
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["Kvasir-SEG", *(p.name for p in mine)])


# ------------------------------------------------------------ 10. a root with test sets only


def test_evaluate_a_root_that_holds_only_test_sets(tmp_path, student_checkpoint, capsys):
    from kdas_lite.cli import main

    root = tmp_path / "data"
    write_pair(root / "TestDataset" / "Kvasir", TEST_NAMES[0])
    for k in range(2):
        write_pair(root / "TestDataset" / "CVC-300", str(k))
    assert main(["evaluate", str(student_checkpoint), "--data", str(root), "--image-size", "64",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| Kvasir (1/100) | 1 |" in out and "| CVC-300 (2/60) | 2 |" in out
    assert main(["evaluate", str(student_checkpoint), "--data", str(root), "--sets",
                 "ETIS-LaribPolypDB", "--image-size", "64", "--quiet"]) == 2
    assert "Test sets present: Kvasir, CVC-300." in capsys.readouterr().err


# ------------------------------------------------------------ 13. prepare


def raw_kvasir(folder: Path, names=(*OWN, *TEST_NAMES)) -> Path:
    for k, stem in enumerate(names):
        write_pair(folder, stem, 20 + k)
    return folder


def test_prepare_names_a_corrupt_manifest_and_keeps_a_foreign_one(tmp_path):
    raw = raw_kvasir(tmp_path / "raw")
    root = tmp_path / "root"
    root.mkdir()
    (root / "MANIFEST.json").write_text("{not json")
    with pytest.raises(DataError, match=rf"{esc(root / 'MANIFEST.json')} is not valid JSON"):
        prepare_kvasir_split(raw, root)
    mine = json.dumps({"sets": {}, "owner": "me"})
    (root / "MANIFEST.json").write_text(mine)
    with pytest.raises(DataError, match=r"MANIFEST\.json was not written by prepare"):
        prepare_kvasir_split(raw, root)
    assert (root / "MANIFEST.json").read_text() == mine
    assert sorted(p.name for p in root.iterdir()) == ["MANIFEST.json"]


def _split_of(root: Path) -> tuple[list[str], list[str]]:
    return (sorted(p.stem for p in (root / "TrainDataset" / "images").iterdir()),
            sorted(p.stem for p in (root / "TestDataset" / "Kvasir" / "images").iterdir()))


def test_prepare_failing_half_way_rolls_back(tmp_path, monkeypatch):
    from kdas_lite.data import prepare

    raw, root = raw_kvasir(tmp_path / "raw"), tmp_path / "root"
    real_replace = os.replace

    def disk_full_on_the_test_set(source, dest):
        if Path(dest).name == "Kvasir":
            raise OSError(28, "No space left on device")
        return real_replace(source, dest)

    monkeypatch.setattr(prepare.os, "replace", disk_full_on_the_test_set)
    with pytest.raises((DataError, OSError)):
        prepare_kvasir_split(raw, root)
    monkeypatch.undo()
    assert sorted(p.name for p in root.iterdir()) == []  # nothing half-written kept
    prepare_kvasir_split(raw, root)
    assert _split_of(root) == (OWN, TEST_NAMES)


def test_prepare_killed_half_way_is_finished_by_the_next_run(tmp_path):
    raw, root = raw_kvasir(tmp_path / "raw"), tmp_path / "root"
    killed = ("import os, sys\nfrom pathlib import Path\nfrom kdas_lite.data import prepare\n"
              "real = os.replace\n"
              "def die(source, dest):\n"
              "    if Path(dest).name == 'Kvasir': os._exit(9)\n"
              "    return real(source, dest)\n"
              "prepare.os.replace = die\n"
              "prepare.prepare_kvasir_split(sys.argv[1], sys.argv[2])\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", killed, str(raw), str(root)], env=env,
                          timeout=120, capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    assert (root / "TrainDataset").is_dir()  # killed after the training folder was moved
    prepare_kvasir_split(raw, root)
    assert _split_of(root) == (OWN, TEST_NAMES)
    assert sorted(p.name for p in root.iterdir()) == ["MANIFEST.json", "TestDataset",
                                                      "TrainDataset"]


def test_prepare_and_training_refuse_the_same_pair_counts(tmp_path):
    raw = tmp_path / "Kvasir-SEG"
    write_pair(raw, TEST_NAMES[0])
    for k in range(1000):  # 1001 pairs: one more than Kvasir-SEG holds
        for sub, suffix in (("images", "jpg"), ("masks", "png")):
            os.link(raw / sub / f"{TEST_NAMES[0]}.{suffix}", raw / sub / f"x{k:04d}.{suffix}")
    message = r"holds 1001 image/mask pairs but kvasir-seg has 1000"
    with pytest.raises(DataError, match=message):
        find_layout(tmp_path)  # what train-teacher does
    with pytest.raises(DataError, match=message):
        prepare_kvasir_split(raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prepare_of_another_source_into_a_prepared_root_says_so(tmp_path):
    root = tmp_path / "root"
    first = raw_kvasir(tmp_path / "first")
    layout = prepare_kvasir_split(first, root)
    copy = shutil.copytree(first, tmp_path / "copy")  # the same images elsewhere: same split
    assert prepare_kvasir_split(copy, root) == layout
    other = raw_kvasir(tmp_path / "other", names=(*OWN[:2], *TEST_NAMES))
    with pytest.raises(DataError, match=rf"prepared from {esc(first)}.*{esc(other)} differs"):
        prepare_kvasir_split(other, root)
    assert _split_of(root) == (OWN, TEST_NAMES)
