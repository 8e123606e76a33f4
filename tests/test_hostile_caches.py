"""Caches and run identity that follow the content, and cache files checked to the last byte
(issue 26): a same-size edit with its mtime restored, corrupt cache files of every kind, cache
folders that cannot be written, the umask, ``--resume`` on content-changed data, and a lost
torchrun process.

Every edit here restores the file's size *and* modification time, as ``cp -p``, ``tar -x``,
``rsync -t`` or a backup restore do: only the bytes (and the ctime, which no tool can set back)
change.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from training_helpers import tiny_config

from kdas_lite.data import DataWarning, PolypDataset, PolypTestDataset, pair_files, read_mask
from kdas_lite.data import cache_files as cache_module
from kdas_lite.data import dataset as dataset_module
from kdas_lite.data.synthetic import make_synthetic_dataset
from kdas_lite.errors import CheckpointError, TrainingError
from kdas_lite.evaluate import evaluate
from kdas_lite.train import fit

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
_NOTE = PngInfo()
_NOTE.add_text("note", "a test mask: " + "x" * 100)  # room for a smaller replacement's padding


def _write_set(folder: Path, n: int = 3, seed: int = 0) -> Path:
    """``n`` random JPEG images with PNG masks (a rectangle each) of different sizes."""
    rng = np.random.default_rng(seed)
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for i in range(n):
        h, w = 30 + 7 * i, 40 + 5 * i
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4: h // 2 + i, w // 3: w - 2] = 255
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            folder / "images" / f"{i:02d}.jpg", quality=90)
        Image.fromarray(mask).save(folder / "masks" / f"{i:02d}.png", pnginfo=_NOTE)
    return folder


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (len(data).to_bytes(4, "big") + kind + data
            + zlib.crc32(kind + data).to_bytes(4, "big"))


def replace_keeping_size_and_mtime(path: Path, mask: np.ndarray) -> None:
    """Overwrite the PNG ``path`` with ``mask`` (a small PNG, padded with a text chunk to the
    old byte size), then put the old atime/mtime back: what a restore from a backup does."""
    before = path.stat()
    Image.fromarray(mask > 0).save(path, optimize=True)  # bilevel: a few dozen bytes
    png = path.read_bytes()
    pad = before.st_size - len(png) - 12 - len(b"pad\0")
    assert pad >= 0, "the replacement mask compresses larger than the original"
    end = png.rindex(b"IEND") - 4  # before the IEND chunk's length field
    path.write_bytes(png[:end] + _png_chunk(b"tEXt", b"pad\0" + b"x" * pad) + png[end:])
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def _corner(shape: tuple[int, int]) -> np.ndarray:
    """A mask unlike the rectangles of :func:`_write_set`: a 4 × 4 square in the corner."""
    mask = np.zeros(shape, np.uint8)
    mask[:4, :4] = 255
    return mask


def _samples(dataset: PolypTestDataset) -> list[tuple[torch.Tensor, np.ndarray]]:
    return [(dataset[i]["image"], dataset[i]["mask"]) for i in range(len(dataset))]


def _same(a: list, b: list) -> bool:
    return all(torch.equal(x[0], y[0]) and np.array_equal(x[1], y[1])
               for x, y in zip(a, b, strict=True))


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


class _TwoMaps(torch.nn.Module):
    """A tiny "segmenter" (a 1×1 conv, two logit maps) that trains in milliseconds."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p1, p2 = self.conv(x).split(1, dim=1)
        return p1, p2


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    """Each test sees the warning about an unusable cache folder (given once per process)."""
    monkeypatch.setattr(cache_module, "_warned", set())


# ---------------------------------------------------------------------------------------------
# 1. the test-set cache follows the content
# ---------------------------------------------------------------------------------------------
def test_a_same_size_mask_with_its_mtime_restored_gets_a_fresh_cache(tmp_path):
    folder = _write_set(tmp_path / "data" / "Kvasir")
    cache = tmp_path / "cache"
    first = PolypTestDataset(folder, size=16, cache_dir=cache)
    mask_path = folder / "masks" / "01.png"
    old = first[1]["mask"]
    replace_keeping_size_and_mtime(mask_path, _corner(old.shape))
    again = PolypTestDataset(folder, size=16, cache_dir=cache)
    assert again.cache_files[1] != first.cache_files[1]  # a new masks file ...
    assert again.cache_files[0] == first.cache_files[0]  # ... and the images' one kept
    assert np.array_equal(again[1]["mask"], read_mask(mask_path))
    assert not np.array_equal(again[1]["mask"], old)


def test_evaluate_scores_a_same_size_same_mtime_edit_afresh(tmp_path):
    sets = {"Kvasir": _write_set(tmp_path / "Kvasir", n=3, seed=1)}
    kwargs = {"size": 16, "batch_size": 2, "progress": False, "workers": 1,
              "cache_dir": tmp_path / "cache"}
    before = evaluate(_Red(), sets, **kwargs)
    for k in range(3):
        path = sets["Kvasir"] / "masks" / f"{k:02d}.png"
        replace_keeping_size_and_mtime(path, _corner(read_mask(path).shape))
    after = evaluate(_Red(), sets, **kwargs)
    fresh = evaluate(_Red(), sets, **{**kwargs, "cache": False})
    assert after.rows == fresh.rows
    assert after.rows["Kvasir"]["meanDic"] != before.rows["Kvasir"]["meanDic"]


def test_random_bytes_behind_a_valid_npy_header_are_caught_and_rebuilt(tmp_path):
    folder = _write_set(tmp_path / "data" / "Kvasir")
    images_file, _ = PolypTestDataset(folder, size=16, cache_dir=tmp_path / "c").cache_files
    with images_file.open("rb") as handle:
        np.lib.format.read_magic(handle)
        np.lib.format.read_array_header_1_0(handle)
        start = handle.tell()
    data = bytearray(images_file.read_bytes())
    data[start:] = np.random.default_rng(0).integers(0, 256, len(data) - start,
                                                     np.uint8).tobytes()
    images_file.write_bytes(bytes(data))
    assert np.load(images_file).shape == (3, 16, 16, 3)  # still a valid array, other pixels
    with pytest.warns(DataWarning, match=re.escape(str(images_file))):
        rebuilt = PolypTestDataset(folder, size=16, cache_dir=tmp_path / "c")
    assert _same(_samples(rebuilt), _samples(PolypTestDataset(folder, size=16)))


# ---------------------------------------------------------------------------------------------
# 3. every unreadable cache file is rebuilt, with a warning naming it
# ---------------------------------------------------------------------------------------------
def _corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "empty":  # what a power cut leaves of a file written without fsync
        data = bytearray()
    elif how == "truncated":
        data = data[: len(data) // 2]
    else:  # one flipped byte in the middle
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["empty", "truncated", "flipped"])
@pytest.mark.parametrize("kind", ["test images .npy", "test masks .npz", "training .npy"])
def test_every_unreadable_cache_file_is_rebuilt_with_a_warning_naming_it(tmp_path, kind, how):
    folder = _write_set(tmp_path / "data" / "Kvasir")
    cache = tmp_path / "cache"
    pairs = pair_files(folder / "images", folder / "masks")

    def build() -> tuple[Path, list]:
        if kind == "training .npy":
            dataset = PolypDataset(pairs, size=16, cache="disk", cache_dir=cache, progress=False)
            return dataset.cache_file, [dataset[i] for i in range(len(dataset))]
        dataset = PolypTestDataset(folder, size=16, cache_dir=cache)
        return dataset.cache_files[0 if kind.startswith("test images") else 1], _samples(dataset)

    path, _ = build()
    _corrupt(path, how)
    with pytest.warns(DataWarning, match=f"rebuilding unreadable cache file {re.escape(str(path))}"
                      ):
        rebuilt_path, samples = build()
    assert rebuilt_path == path
    if kind == "training .npy":
        plain = PolypDataset(pairs, size=16, cache="none")
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                   for a, b in zip(samples, [plain[i] for i in range(len(plain))], strict=True))
    else:
        assert _same(samples, _samples(PolypTestDataset(folder, size=16)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt for good: read again without a warning
        build()


def test_an_unreadable_hash_list_is_rebuilt_and_hashes_stay_right(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "RACY_SECONDS", -1.0)  # remember even fresh files
    folder = _write_set(tmp_path / "data")
    files = sorted((folder / "masks").iterdir())
    truth = [cache_module.file_sha256(p) for p in files]
    assert cache_module.content_hashes(files, tmp_path / "c") == truth
    _corrupt(tmp_path / "c" / "file-hashes.json", "flipped")
    with pytest.warns(DataWarning, match="file-hashes.json"):
        assert cache_module.content_hashes(files, tmp_path / "c") == truth


def test_cache_files_are_flushed_to_disk_before_the_rename(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def recording_replace(src, dst) -> None:
        events.append(("replace", str(src)))
        replace(src, dst)

    monkeypatch.setattr(cache_module.os, "fsync", recording_fsync)
    monkeypatch.setattr(cache_module.os, "replace", recording_replace)
    folder = _write_set(tmp_path / "data" / "Kvasir")
    PolypTestDataset(folder, size=16, cache_dir=tmp_path / "cache")
    renamed = [path for what, path in events if what == "replace"]
    assert len([p for p in renamed if ".file-hashes." not in p]) == 4  # 2 files, 2 checksums
    for path in renamed:
        assert ("fsync", path) in events[: events.index(("replace", path))]


# ---------------------------------------------------------------------------------------------
# The remembered content hashes are never stale
# ---------------------------------------------------------------------------------------------
def test_a_remembered_hash_is_reused_only_while_size_mtime_ctime_and_inode_agree(
        tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "RACY_SECONDS", -1.0)
    folder = _write_set(tmp_path / "data")
    files = sorted((folder / "masks").iterdir())
    first = cache_module.content_hashes(files, tmp_path / "c")
    hashed: list[Path] = []
    real = cache_module.file_sha256

    def counting(path):
        hashed.append(Path(path))
        return real(path)

    monkeypatch.setattr(cache_module, "file_sha256", counting)
    assert cache_module.content_hashes(files, tmp_path / "c") == first
    assert not set(hashed) & set(files)  # all remembered (only the hash list was checked)
    replace_keeping_size_and_mtime(files[1], _corner(read_mask(files[1]).shape))
    hashed.clear()
    again = cache_module.content_hashes(files, tmp_path / "c")
    assert [p for p in hashed if p in files] == [files[1]]  # only the edited file is reread
    assert again[1] == real(files[1]) != first[1] and again[::2] == first[::2]


def test_a_file_changed_within_the_racy_window_is_hashed_but_not_remembered(tmp_path):
    folder = _write_set(tmp_path / "data")  # written just now: its ctime is < 2 s old
    files = sorted((folder / "masks").iterdir())
    cache_module.content_hashes(files, tmp_path / "c")
    assert not (tmp_path / "c" / "file-hashes.json").exists()


# ---------------------------------------------------------------------------------------------
# 5. cache folders that cannot be written; permissions follow the umask
# ---------------------------------------------------------------------------------------------
def test_kdas_cache_naming_a_file_warns_and_evaluates_without_the_cache(tmp_path, monkeypatch):
    """``KDAS_CACHE`` names a regular file: creating the folder fails with ``FileExistsError``
    (as for a user who pointed it at the wrong path)."""
    not_a_folder = tmp_path / "cache.txt"
    not_a_folder.write_text("mine\n")
    monkeypatch.setenv("KDAS_CACHE", str(not_a_folder))
    sets = {"Kvasir": _write_set(tmp_path / "Kvasir")}
    kwargs = {"size": 16, "batch_size": 2, "progress": False, "workers": 1}
    with pytest.warns(DataWarning, match=rf"{re.escape(str(not_a_folder))} \(KDAS_CACHE\)"):
        table = evaluate(_Red(), sets, **kwargs)
    assert table.rows == evaluate(_Red(), sets, cache=False, **kwargs).rows
    assert not_a_folder.read_text() == "mine\n"
    pairs = pair_files(sets["Kvasir"] / "images", sets["Kvasir"] / "masks")
    monkeypatch.setattr(cache_module, "_warned", set())
    with pytest.warns(DataWarning, match="KDAS_CACHE"):
        dataset = PolypDataset(pairs, size=16, cache="disk", progress=False)
    assert dataset.cache == "none" and dataset.cache_file is None
    assert torch.equal(dataset[0][1], PolypDataset(pairs, size=16)[0][1])


def _read_only(monkeypatch, folder: Path) -> None:
    """Make creating files in ``folder`` fail with ``PermissionError``, as in a folder of
    mode 0500 owned by someone else. The tests run as root, which writes through any mode
    bits, so ``os.open`` (which every cache write goes through) is refused there instead."""
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and Path(path).parent == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(cache_module.os, "open", refusing_open)


def test_a_read_only_cache_folder_warns_and_evaluates_without_the_cache(tmp_path, monkeypatch):
    folder = tmp_path / "shared-cache"
    folder.mkdir()
    monkeypatch.setenv("KDAS_CACHE", str(folder))
    sets = {"Kvasir": _write_set(tmp_path / "Kvasir")}
    kwargs = {"size": 16, "batch_size": 2, "progress": False, "workers": 1}
    _read_only(monkeypatch, folder)
    with pytest.warns(DataWarning, match=rf"{re.escape(str(folder))} \(KDAS_CACHE\) cannot be "
                                         r"written \(Permission denied"):
        table = evaluate(_Red(), sets, **kwargs)
    assert table.rows == evaluate(_Red(), sets, cache=False, **kwargs).rows
    assert list(folder.iterdir()) == []


def test_a_read_only_folder_with_a_complete_cache_is_read_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "RACY_SECONDS", -1.0)
    folder = _write_set(tmp_path / "data" / "Kvasir")
    built = PolypTestDataset(folder, size=16, cache_dir=tmp_path / "cache")
    _read_only(monkeypatch, tmp_path / "cache")
    monkeypatch.setattr(dataset_module, "read_pair", lambda *a: pytest.fail("decoded"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = PolypTestDataset(folder, size=16, cache_dir=tmp_path / "cache")
    assert again.cache_files == built.cache_files


@pytest.mark.parametrize("umask", [0o002, 0o022, 0o077])
def test_cache_files_get_the_permissions_of_the_umask(tmp_path, monkeypatch, umask):
    monkeypatch.setattr(cache_module, "RACY_SECONDS", -1.0)  # the hash list is written too
    folder = _write_set(tmp_path / "data" / "Kvasir")
    pairs = pair_files(folder / "images", folder / "masks")
    old = os.umask(umask)
    try:
        PolypTestDataset(folder, size=16, cache_dir=tmp_path / "cache")
        PolypDataset(pairs, size=16, cache="disk", cache_dir=tmp_path / "cache", progress=False)
    finally:
        os.umask(old)
    made = sorted((tmp_path / "cache").iterdir())
    assert {p.name: p.stat().st_mode & 0o777 for p in made} == {p.name: 0o666 & ~umask
                                                                for p in made}
    assert {p.suffix for p in made} == {".npy", ".npz", ".json", ".sha256"}
    assert not (tmp_path / "cache" / "file-hashes.json.sha256").exists()  # holds its own


# ---------------------------------------------------------------------------------------------
# 2. --resume compares the data's content
# ---------------------------------------------------------------------------------------------
def test_resume_on_same_size_same_mtime_other_masks_is_refused_naming_them(tmp_path):
    first = make_synthetic_dataset(tmp_path / "a", n_train=6, n_test=0, size=64, seed=0)
    config = tiny_config(first, tmp_path / "runs", epochs=2, cache="none")
    fit(_TwoMaps(), config, role="teacher", stop_after_epoch=1, progress=False)
    copy = Path(shutil.copytree(first, tmp_path / "copy"))
    for path in (copy / "TrainDataset" / "masks").iterdir():  # every mask, same size and mtime
        replace_keeping_size_and_mtime(path, _corner(read_mask(path).shape))
    with pytest.raises(CheckpointError) as refused:
        fit(_TwoMaps(), config.replace(data_root=str(copy)), role="teacher", resume=True,
            progress=False)
    message = str(refused.value)
    assert "\n" not in message
    # every mask the run used is named (the images are the same files)
    assert re.search(r"\((\d+) images, \1 changed: (masks/train_\d+\.png, )+masks/train_\d+\.png\)",
                     message), message
    assert f"given now is {copy}" in message
    same = Path(shutil.copytree(first, tmp_path / "same"))  # the same bytes elsewhere: resumes
    result = fit(_TwoMaps(), config.replace(data_root=str(same)), role="teacher", resume=True,
                 progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2]


def test_a_checkpoint_from_before_content_hashes_still_resumes_on_its_data(tmp_path):
    from kdas_lite.runs import _check_same_data, data_identity

    root = make_synthetic_dataset(tmp_path / "a", n_train=4, n_test=0, size=32, seed=0)
    pairs = pair_files(root / "TrainDataset" / "images", root / "TrainDataset" / "masks")
    now = data_identity(root, pairs)
    older = {k: now[k] for k in ("root", "pairs", "sha256")}  # what such a checkpoint holds
    config = tiny_config(root, tmp_path / "runs")
    _check_same_data({"data": older}, config, tmp_path / "last.pth", now)  # no error
    with pytest.raises(CheckpointError, match="other files"):
        _check_same_data({"data": {**older, "sha256": "0" * 64}}, config, tmp_path / "x", now)


# ---------------------------------------------------------------------------------------------
# 6. a lost torchrun process: one line, no traceback
# ---------------------------------------------------------------------------------------------
def test_a_lost_process_becomes_one_training_error(monkeypatch):
    from kdas_lite import distributed

    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 0)
    gloo = ("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] Connection closed by "
            "peer [127.0.0.1]:62665. This is typically caused by a remote worker crashing.")

    @distributed.reports_lost_process
    def training(error: Exception) -> None:
        raise error

    with pytest.raises(TrainingError) as lost:
        training(RuntimeError(gloo))
    assert "process 0 of 2: process 1 of this torchrun run stopped" in str(lost.value)
    assert "--resume" in str(lost.value) and "Connection closed by peer" in str(lost.value)
    assert lost.value.__cause__ is None and lost.value.__suppress_context__
    with pytest.raises(RuntimeError, match="a bug"):  # anything else is left as it is
        training(RuntimeError("a bug"))


_DYING_RANK = textwrap.dedent("""
    import os, sys
    from kdas_lite import train
    from kdas_lite.cli import main

    if os.environ["RANK"] == "1":  # rank 1 dies in its second training step (kill -9, OOM)
        real, calls = train.TrainStep.__call__, []

        def dying(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                os._exit(9)
            return real(self, *args, **kwargs)

        train.TrainStep.__call__ = dying
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
def test_a_dying_rank_leaves_one_line_on_the_survivor(tmp_path):
    from distributed_helpers import free_port

    data, out = tmp_path / "data", tmp_path / "out"
    make_synthetic_dataset(data, n_train=12, n_test=0, size=64, seed=0)
    script = tmp_path / "rank.py"
    script.write_text(_DYING_RANK)
    port = str(free_port())
    args = [sys.executable, str(script), "train-teacher", "--preset", "smoke", "--data",
            str(data), "--output", str(out), "--teacher-encoder", "pvt_v2_b0", "--quiet",
            "--epochs", "2"]
    base = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    ranks = [subprocess.Popen(args, env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    (_, err0), (_, _) = (p.communicate(timeout=300) for p in ranks)
    assert ranks[1].returncode == 9
    assert ranks[0].returncode == 2, err0
    assert "Traceback" not in err0, err0
    errors = [line for line in err0.splitlines() if line.startswith("kdas-lite: error:")]
    assert len(errors) == 1, err0
    assert "process 0 of 2: process 1 of this torchrun run stopped" in errors[0]
    assert "--resume" in errors[0]


def test_a_bilevel_mask_scores_as_its_8_bit_twin(tmp_path):
    """PIL reads a mode-"1" PNG into a bool array whose True bytes are 255: scored uncached it
    gave mean Dice 0 (found by the tests above, whose replacement masks are bilevel)."""
    sets = {name: _write_set(tmp_path / name, n=2, seed=3) for name in ("L", "bilevel")}
    for k in range(2):
        path = sets["bilevel"] / "masks" / f"{k:02d}.png"
        Image.fromarray(read_mask(path)).save(path)  # the same mask, mode "1"
        assert Image.open(path).mode == "1"
        assert read_mask(path).view(np.uint8).max() == 1
    kwargs = {"size": 16, "batch_size": 2, "progress": False, "workers": 1, "cache": False}
    tables = {name: evaluate(_Red(), {"Kvasir": folder}, **kwargs) for name, folder in sets.items()}
    assert tables["L"].rows == tables["bilevel"].rows and tables["L"].rows["Kvasir"]["meanDic"] > 0


@pytest.fixture(scope="module")
def student_checkpoint(tmp_path_factory) -> Path:
    from kdas_lite.checkpoint_files import save_checkpoint
    from kdas_lite.models import build_student
    from kdas_lite.train import CHECKPOINT_FORMAT

    torch.manual_seed(0)
    model = build_student()
    return save_checkpoint({"format": CHECKPOINT_FORMAT, "role": "student",
                            "arch": model.config(), "model": model.state_dict()},
                           tmp_path_factory.mktemp("ckpt") / "s.pth")


@pytest.mark.slow
def test_the_evaluate_command_rebuilds_or_skips_a_broken_cache_in_one_line(
        tmp_path, monkeypatch, capsys, student_checkpoint):
    from kdas_lite.cli import main

    root = tmp_path / "data"
    _write_set(root / "TestDataset" / "CVC-300")
    monkeypatch.setenv("KDAS_CACHE", str(tmp_path / "cache"))
    command = ["evaluate", str(student_checkpoint), "--data", str(root), "--image-size", "64",
               "--quiet"]
    assert main(command) == 0
    capsys.readouterr()
    (masks_file,) = (tmp_path / "cache").glob("test-masks-*.npz")
    masks_file.write_bytes(b"")  # what a power cut leaves of a file written without fsync
    assert main(command) == 0
    err = capsys.readouterr().err
    assert f"kdas-lite: warning: rebuilding unreadable cache file {masks_file}" in err
    assert "Traceback" not in err
    monkeypatch.setenv("KDAS_CACHE", str(student_checkpoint))  # a file, not a folder
    assert main(command) == 0
    err = capsys.readouterr().err
    assert f"kdas-lite: warning: cache folder {student_checkpoint} (KDAS_CACHE) cannot be " \
        "written" in err and "Traceback" not in err
