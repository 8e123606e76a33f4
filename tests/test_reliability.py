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
  ``test_model_checkpoints.py::test_unreadable_and_unsafe_files_are_refused`` (weight
  loading); here for the two other readers, ``load_trained`` and ``--resume``:
  ``test_resume_and_load_trained_refuse_damaged_or_unsafe_files``
- wrong architecture fails with a key diff:
  ``test_model_checkpoints.py::test_student_file_into_teacher_explains_the_mismatch``,
  ``test_model_checkpoints.py::test_stored_architecture_is_named_in_the_error``,
  ``test_train.py::test_load_trained_rebuilds_and_rejects_foreign_architectures``
- truncated checkpoint fails clearly:
  ``test_model_checkpoints.py::test_unreadable_and_unsafe_files_are_refused``; for
  ``load_trained`` and ``--resume``: here (same test as above)
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

import pytest
import torch
from training_helpers import tiny_config as training_config
from training_helpers import tiny_dataset

from kdas_lite.checkpoint import load_checkpoint, save_checkpoint
from kdas_lite.config import TrainConfig
from kdas_lite.errors import CheckpointError
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


@pytest.mark.parametrize("damage", ["truncated", "code"])
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
    else:
        torch.save({"epoch": 1, "model": Payload()}, path)
        expected = r"refusing to load .*last\.pth"

    with pytest.raises(CheckpointError, match=expected):
        if reader == "resume":
            train_teacher(tiny_config(data_root, tmp_path), resume=True, progress=False)
        else:
            load_trained(path)
    assert "code ran" not in capsys.readouterr().out
