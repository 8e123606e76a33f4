"""Reliability audit (issue 6): where each failure mode is tested, plus the missing cases.

Every item the issue lists is covered by the normal test suite. Most tests already live next
to the code they exercise; this file adds only the items that had no test yet (marked "here").

Bad input files (each loads correctly, or fails with a DataError that names the file):

- truncated JPEG: ``test_data_io.py::test_read_image_truncated_jpeg_names_the_file``; inside a
  dataset and its memory cache: ``test_data_dataset.py::test_bad_file_fails_with_its_name``
- 16-bit masks (0/65535 and 0/1) and 0/1 masks:
  ``test_data_io.py::test_read_mask_binarises_every_encoding``; 16-bit images:
  ``test_data_io.py::test_read_image_16_bit_is_scaled``
- palette (and bilevel) masks: ``test_data_io.py::test_read_mask_palette_and_bilevel``;
  palette images: ``test_data_io.py::test_read_image_converts_other_modes_to_rgb``
- image/mask size mismatch: ``test_data_io.py::test_read_pair_size_mismatch_names_both_files``
  (``PolypDataset`` and ``PolypTestDataset`` read every sample through ``read_pair``)
- non-image files in a folder, ignored with a counted warning, never silently:
  ``test_data_io.py::test_pair_files_ignores_junk_with_a_counted_warning``; unpaired files
  are an error listing them:
  ``test_data_io.py::test_pair_files_unmatched_lists_first_names_and_counts``
- empty dataset: ``test_data_io.py::test_pair_files_empty_or_missing_folder``,
  ``test_data_dataset.py::test_invalid_arguments``
- non-square images: every fixture of ``test_data_io.py`` is 24×40;
  ``test_data_dataset.py::test_training_sample_shapes_and_values`` (48×64 files → square
  tensors) and ``test_data_dataset.py::test_test_dataset_keeps_original_mask_and_collates``
  (the 40×56 mask is kept at its own size for scoring)
- CMYK JPEG: ``test_data_io.py::test_read_image_cmyk_jpeg``

Checkpoints:

- loading uses ``weights_only=True``, a pickle carrying code is refused without running it:
  ``test_key_maps.py::test_unreadable_and_unsafe_files_are_refused`` (weight
  loading); here for the two other readers, ``load_trained`` and ``--resume``:
  ``test_resume_and_load_trained_refuse_damaged_or_unsafe_files``
- wrong architecture fails with a key diff:
  ``test_key_maps.py::test_student_file_into_teacher_explains_the_mismatch``,
  ``test_key_maps.py::test_stored_architecture_is_named_in_the_error``,
  ``test_train.py::test_load_trained_rebuilds_and_rejects_foreign_architectures``
- truncated checkpoint fails clearly:
  ``test_key_maps.py::test_unreadable_and_unsafe_files_are_refused``; for
  ``load_trained`` and ``--resume``: here (same test as above)
- junk given as a checkpoint (empty, text, JSON, a foreign zip, a pickled tensor / list / dict
  without the expected keys, a foreign state dict, an unbuildable architecture): a
  ``CheckpointError`` naming the file from every loader, here
  (``test_junk_checkpoints_fail_with_a_checkpoint_error_in_every_loader``), and one line
  with exit status 2 from every command that reads one
  (``test_cli_junk_checkpoint_is_one_line_and_exit_2``)
- checkpoints follow the umask like every other output: here
  (``test_checkpoints_follow_the_umask``)
- temporary files of a killed save are removed when the next run starts in the folder: here
  (``test_a_new_run_removes_temporary_files_left_by_a_killed_one``)
- atomic writes, a crash during a save leaves the previous checkpoint intact: here,
  ``test_save_checkpoint_crash_mid_write_keeps_the_previous_file`` (simulated crash inside
  ``torch.save``) and, during training,
  ``test_crash_while_writing_last_pth_keeps_the_previous_epoch_and_resumes``

Interrupted training:

- killed mid-epoch, resumed, same weights as an uninterrupted run (CPU, deterministic):
  ``test_train.py::test_resume_gives_the_same_weights_as_an_uninterrupted_run``; killed while
  the epoch's checkpoint is being written: here
  (``test_crash_while_writing_last_pth_keeps_the_previous_epoch_and_resumes``)
- loss becomes NaN, the last good epoch is kept:
  ``test_train.py::test_nan_loss_stops_cleanly_and_keeps_the_last_good_checkpoint``
- resuming with other settings is refused: ``test_train.py::test_resume_refuses_other_settings``

Downloads (against an HTTP server the tests start on 127.0.0.1; nothing half-written stays):

- checksum mismatch: ``test_download.py::test_checksum_mismatch_deletes_the_download``
- connection dropped mid-file: ``test_download.py::test_connection_dropped_mid_file``
- disk use is bounded: ``test_download.py::test_every_registry_dataset_caps_its_download``,
  ``test_download.py::test_download_stops_at_max_bytes_with_or_without_a_content_length``,
  ``test_download.py::test_many_harmless_members_adding_up_are_a_zip_bomb``,
  ``test_download.py::test_download_dataset_caps_the_unpacked_size``
- zip-slip entries refused before anything is written:
  ``test_download.py::test_zip_slip_is_refused_before_writing``,
  ``test_download.py::test_symlink_member_is_refused``; corrupt archives:
  ``test_download.py::test_corrupt_zip_leaves_nothing``

Metrics:

- hypothesis property tests (ranges, perfect prediction, empty mask, monotonicity,
  transpose invariance, dataset mean): ``test_metrics_properties.py``
"""

from __future__ import annotations

import io
import json
import os
import stat
import warnings
import zipfile

import pytest
import torch
from training_helpers import tiny_config as training_config
from training_helpers import tiny_dataset

from kdas_lite.checkpoint_files import load_checkpoint, remove_stale_temp_files, save_checkpoint
from kdas_lite.cli import main
from kdas_lite.config import TrainConfig
from kdas_lite.errors import CheckpointError
from kdas_lite.models import (
    PolypPVT,
    load_efficientnet_lite_backbone,
    load_polyp_pvt_checkpoint,
    load_pvt_v2_backbone,
)
from kdas_lite.train import load_trained, train_teacher


class SimulatedCrash(Exception):
    """Stands in for the process dying in the middle of writing a file."""


def half_write_then(error: BaseException):
    """A ``torch.save`` replacement that writes half of the real bytes, then raises ``error``."""
    real_save = torch.save

    def save(obj, handle, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        handle.write(data[: len(data) // 2])
        handle.flush()
        raise error

    return save


def leftovers(folder) -> list[str]:
    """Temporary files that a failed atomic write would leave behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------------------------------------
# atomic checkpoint writes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), SimulatedCrash(),
                                   KeyboardInterrupt()], ids=["disk-full", "crash", "ctrl-c"])
def test_save_checkpoint_crash_mid_write_keeps_the_previous_file(tmp_path, monkeypatch, error):
    path = tmp_path / "run" / "last.pth"
    previous = {"epoch": 1, "model": {"w": torch.arange(1000.0)}}
    save_checkpoint(previous, path)
    before = path.read_bytes()

    monkeypatch.setattr(torch, "save", half_write_then(error))
    with pytest.raises(type(error)):
        save_checkpoint({"epoch": 2, "model": {"w": torch.zeros(1000)}}, path)
    # a first save that crashes creates nothing at the destination
    with pytest.raises(type(error)):
        save_checkpoint({"epoch": 1}, tmp_path / "run" / "new.pth")
    monkeypatch.undo()

    assert path.read_bytes() == before
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 1 and torch.equal(loaded["model"]["w"], previous["model"]["w"])
    assert not (tmp_path / "run" / "new.pth").exists()
    assert leftovers(tmp_path / "run") == []


# ---------------------------------------------------------------------------------------------
# training: crash while the epoch's checkpoint is written; damaged files on resume / load
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


def tiny_config(data_root, output_dir, **overrides) -> TrainConfig:
    """Two epochs of one batch of 2, so that epoch 2's checkpoint can be interrupted."""
    return training_config(data_root, output_dir, **{
        "epochs": 2, "warmup_epochs": 0.5, "max_train_images": 2, "max_val_images": 1,
        "val_fraction": 0.25, **overrides})


@pytest.mark.slow
def test_crash_while_writing_last_pth_keeps_the_previous_epoch_and_resumes(
        data_root, tmp_path, monkeypatch):
    config = tiny_config(data_root, tmp_path)
    real_save, crash = torch.save, half_write_then(SimulatedCrash())
    lost = {}  # the epoch-2 checkpoint whose writing is interrupted

    def crash_on_epoch_2_last_pth(obj, handle, *args, **kwargs):
        if isinstance(obj, dict) and "optimizer" in obj and obj["epoch"] == 2:
            lost.update(obj)
            return crash(obj, handle, *args, **kwargs)
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", crash_on_epoch_2_last_pth)
    with pytest.raises(SimulatedCrash):
        train_teacher(config, progress=False)
    monkeypatch.undo()

    run_dir = tmp_path / "teacher"
    last = load_checkpoint(run_dir / "last.pth")  # intact, and still the completed epoch 1
    assert last["epoch"] == 1 and [r["epoch"] for r in last["history"]] == [1]
    assert load_checkpoint(run_dir / "best.pth")["epoch"] in (1, 2)  # written before last.pth
    assert leftovers(run_dir) == []

    # Resuming redoes epoch 2 and ends with exactly the weights the crashed save was writing,
    # i.e. those of an uninterrupted run.
    resumed = train_teacher(config, resume=True, progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    final = load_checkpoint(resumed.last_path)["model"]
    assert final.keys() == lost["model"].keys()
    for key, value in lost["model"].items():
        torch.testing.assert_close(final[key], value, rtol=0, atol=1e-6, msg=key)
    assert resumed.best_epoch == lost["best_epoch"]


class Payload:
    """Unpickling this runs code (``print``); ``weights_only=True`` must refuse it."""

    def __reduce__(self):
        return (print, ("code ran while loading",))


@pytest.mark.parametrize("damage", ["truncated", "code", "list"])
@pytest.mark.parametrize("reader", ["resume", "load_trained"])
def test_resume_and_load_trained_refuse_damaged_or_unsafe_files(data_root, tmp_path, capsys,
                                                                 damage, reader):
    run_dir = tmp_path / "teacher"
    run_dir.mkdir()
    path = run_dir / "last.pth"
    if damage == "truncated":
        save_checkpoint({"epoch": 1, "model": {"w": torch.zeros(4096)}}, path)
        path.write_bytes(path.read_bytes()[:2000])
        expected = r"last\.pth.*truncated"
    elif damage == "code":
        torch.save({"epoch": 1, "model": Payload()}, path)
        expected = r"refusing to load .*last\.pth"
    else:  # a readable file that holds something else than a checkpoint dict
        torch.save([torch.zeros(2)], path)
        expected = r"last\.pth .*not a kdas_lite training checkpoint"

    with pytest.raises(CheckpointError, match=expected):
        if reader == "resume":
            train_teacher(tiny_config(data_root, tmp_path), resume=True, progress=False)
        else:
            load_trained(path)
    assert "code ran" not in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# junk given as a checkpoint: one clear error from every loader and every command
# ---------------------------------------------------------------------------------------------
def _pickled(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _foreign_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")
    return buffer.getvalue()


JUNK = {  # name → file content; the comment says what today's torch.load makes of it
    "empty": lambda: b"",
    "text": lambda: b"hello world\n",  # KeyError inside the unpickler
    "text-lines": lambda: b"epoch: 3\nbest: 0.9\n",  # IndexError
    "one-letter": lambda: b"a",  # IndexError
    "json": lambda: json.dumps({"arch": {"encoder": "pvt_v2_b0"}, "model": {}}).encode(),
    "pickle-protocol-5-junk": lambda: b"\x80\x05hello",  # a warning, then KeyError
    "foreign-zip": _foreign_zip,
    "tensor": lambda: _pickled(torch.zeros(3)),
    "list": lambda: _pickled([1, 2]),
    "dict-without-keys": lambda: _pickled({"a": 1}),
    "int-keys": lambda: _pickled({1: torch.zeros(2)}),
    "foreign-state-dict": lambda: _pickled(torch.nn.Linear(2, 2).state_dict()),
    "lite-names-no-tensors": lambda: _pickled({"_conv_stem.weight": 1, "_blocks.0.w": 2}),
    "unknown-encoder": lambda: _pickled({"arch": {"encoder": "nope"}, "model": {}}),
    "encoder-not-a-name": lambda: _pickled({"arch": {"encoder": ["pvt_v2_b0"]}, "model": {}}),
    "channel-not-a-number": lambda: _pickled({"arch": {"encoder": "pvt_v2_b0",
                                                       "channel": "many"}, "model": {}}),
}


@pytest.fixture(scope="module")
def junk_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("junk")
    for name, content in JUNK.items():
        (folder / f"{name}.pth").write_bytes(content())
    return folder


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return PolypPVT(encoder="pvt_v2_b0", pretrained=False)


@pytest.mark.parametrize("name", JUNK)
def test_junk_checkpoints_fail_with_a_checkpoint_error_in_every_loader(junk_files, student,
                                                                       name):
    path = junk_files / f"{name}.pth"
    loaders = {
        "load_trained": lambda: load_trained(path),
        "load_polyp_pvt_checkpoint": lambda: load_polyp_pvt_checkpoint(student, path),
        "load_pvt_v2_backbone": lambda: load_pvt_v2_backbone(student, path),
        "load_efficientnet_lite_backbone": lambda: load_efficientnet_lite_backbone(student, path),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for loader in loaders.values():
            with pytest.raises(CheckpointError, match=f"{name}.pth"):
                loader()
    assert [str(w.message) for w in caught] == []  # nothing but the error itself


def test_load_checkpoint_still_shows_warnings_of_files_it_reads(tmp_path, monkeypatch):
    """Warnings are held back only for files that fail to load."""
    path = save_checkpoint({"w": 7}, tmp_path / "ok.pth")
    real_load = torch.load

    def load_with_a_note(*args, **kwargs):
        warnings.warn("a note from torch.load", UserWarning, stacklevel=2)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load_with_a_note)
    with pytest.warns(UserWarning, match="a note from torch.load"):
        assert load_checkpoint(path) == {"w": 7}


def _cli_args(command: str, checkpoint: str, tmp_path) -> list[str]:
    return {
        "evaluate": ["evaluate", checkpoint, "--data", str(tmp_path), "--quiet"],
        "predict": ["predict", checkpoint, str(tmp_path), "--output", str(tmp_path / "out")],
        "export": ["export", checkpoint, str(tmp_path / "m.onnx")],
        "distill": ["distill", "--teacher", checkpoint, "--data", str(tmp_path), "--output",
                    str(tmp_path / "runs"), "--quiet"],
    }[command]


@pytest.mark.parametrize("name", ["empty", "text", "text-lines", "pickle-protocol-5-junk",
                                  "encoder-not-a-name"])
@pytest.mark.parametrize("command", ["evaluate", "predict", "export", "distill"])
def test_cli_junk_checkpoint_is_one_line_and_exit_2(junk_files, tmp_path, capsys, command,
                                                    name):
    path = junk_files / f"{name}.pth"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = main(_cli_args(command, str(path), tmp_path))
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("kdas-lite: error: ") and str(path) in err
    assert [str(w.message) for w in caught] == []  # no warning lines before the error


# ---------------------------------------------------------------------------------------------
# permissions and leftovers of checkpoint files
# ---------------------------------------------------------------------------------------------
def test_checkpoints_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        for mask, mode in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
            os.umask(mask)
            path = save_checkpoint({"w": torch.ones(1)}, tmp_path / oct(mask) / "best.pth")
            assert stat.S_IMODE(path.stat().st_mode) == mode
    finally:
        os.umask(previous)


def _plant_leftovers(run_dir):
    """What ``kill -9`` during two saves leaves, plus files that are not ours to delete."""
    run_dir.mkdir(parents=True)
    stale = [run_dir / ".best.pth.k3j4h5.tmp", run_dir / ".last.pth.a1b2c3.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    kept = [run_dir / ".other.pth.a1b2c3.tmp", run_dir / "notes.tmp", run_dir / "best.pth.txt"]
    for path in kept:
        path.write_text("mine")
    return stale, kept


def test_remove_stale_temp_files_only_touches_the_named_checkpoints(tmp_path):
    stale, kept = _plant_leftovers(tmp_path / "run")
    removed = remove_stale_temp_files(tmp_path / "run", ("best.pth", "last.pth"))
    assert sorted(removed) == sorted(stale)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(p.name for p in kept)
    assert remove_stale_temp_files(tmp_path / "missing", ("best.pth",)) == []


@pytest.mark.slow
def test_a_new_run_removes_temporary_files_left_by_a_killed_one(data_root, tmp_path):
    stale, kept = _plant_leftovers(tmp_path / "teacher")
    result = train_teacher(tiny_config(data_root, tmp_path, epochs=1), progress=False)
    assert not any(path.exists() for path in stale)
    assert all(path.read_text() == "mine" for path in kept)
    assert result.best_path.exists()
    assert leftovers(result.run_dir) == [".other.pth.a1b2c3.tmp", "notes.tmp"]
