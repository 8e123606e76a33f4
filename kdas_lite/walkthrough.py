"""The runs the notebooks share: one teacher and one KDAS student, trained once.

Notebook 01 trains the teacher into ``<run_root>/teacher/`` and notebook 04 distils the KDAS
student into ``<run_root>/kdas/student/``. Every notebook also runs alone:
:func:`walkthrough_teacher` trains a quick teacher when 01 has not run, and
:func:`walkthrough_checkpoints` distils the student exactly as 04 does when 04 has not run
(04 then reuses that run), so a reader never sees a different student in 02, 03 and 05.
:func:`describe_run` is the line each notebook opens its results with: which pair, which data
(with each test set's label) and which image size the page ran with.
"""


from __future__ import annotations

import os
from pathlib import Path

from kdas_lite import facts
from kdas_lite.checkpoint_files import load_checkpoint
from kdas_lite.colab import warn_box
from kdas_lite.config import TrainConfig
from kdas_lite.data.registry import DataLayout
from kdas_lite.errors import CheckpointError
from kdas_lite.train import distill, train_teacher

__all__ = ["check_checkpoint", "data_label", "describe_checkpoint", "describe_run",
           "walkthrough_checkpoints", "walkthrough_teacher"]


def data_label(layout: DataLayout) -> str:
    """The data in a few words for titles and tables, never a machine path: ``"SYNTHETIC
    stand-in"`` or the last two parts of the data root, e.g. ``"real data, shared/data"``."""
    if layout.synthetic:
        return "SYNTHETIC stand-in"
    root = Path(layout.root).resolve()
    return f"real data, {root.parent.name}/{root.name}" if root.parent.name else "real data"


def describe_run(layout: DataLayout, image_size: int, teacher_encoder: str,
                 student_encoder: str, pretrained: bool, **_: object) -> str:
    """One Markdown line: the pair, the data (each test set with its label) and the image size
    a notebook ran with. ``describe_run(layout, image_size, **encoder_pair(...))`` works."""
    weights = "ImageNet-pretrained" if pretrained else "random init"
    sets = ", ".join(layout.status[n].label if n in layout.status else n for n in layout.test)
    return (f"**This run:** teacher `{teacher_encoder}`, student `{student_encoder}` "
            f"({weights}) · data: {data_label(layout)}"
            + (f" (test sets: {sets})" if sets else "") + f" · image size {image_size} px")

def _run_first(notebook: str) -> str:
    return (f"For the real one, run notebook {notebook} first: on Colab with drive = True (the "
            "default), so that its runs are kept on Google Drive, where this notebook finds them.")


def describe_checkpoint(path: str | os.PathLike[str]) -> str:
    """One line saying which model a checkpoint holds, e.g. ``teacher: runs/.../best.pth
    (pvt_v2_b2, 352 px, 20 epochs, best epoch 17, val Dice 0.912)``; in a course run, what it
    states goes to the run's facts file (:func:`kdas_lite.facts.record`).

    Raises:
        CheckpointError: missing, corrupt or unsafe file.
    """
    state = load_checkpoint(path)
    config = state.get("train_config") or {} if isinstance(state, dict) else {}
    role = state.get("role", "model") if isinstance(state, dict) else "model"
    encoder = config.get("teacher_encoder" if role == "teacher" else "student_encoder", "?")
    epochs = config.get("epochs", "?")
    parts = [str(encoder), f"{config.get('image_size', '?')} px",
             f"{epochs} epoch{'' if epochs == 1 else 's'}"]
    if isinstance(state, dict) and "epoch" in state:
        parts.append(f"best epoch {state['epoch']}")
    if isinstance(state, dict) and isinstance(state.get("val_dice"), float):
        parts.append(f"val Dice {state['val_dice']:.3f}")
    weights = state.get("model", state) if isinstance(state, dict) else None
    if isinstance(weights, dict):  # what the line states, in the run's facts file
        stated = {"epochs": config.get("epochs"), "image size": config.get("image_size"),
                  "best epoch": state.get("epoch"), "validation Dice": state.get("val_dice")}
        facts.record(weights, {k: v for k, v in stated.items() if v is not None}, role=role,
                     file=path)
    return f"{role}: {path} ({', '.join(parts)})"


def check_checkpoint(path: str | os.PathLike[str], config: TrainConfig) -> bool:
    """Say in a box when a checkpoint was trained with another encoder or image size than the
    notebook's settings (``config``): 05 at ``image_size = 96`` would otherwise score 64-px
    models without a word, and 04/05 on a T4 (the colab-t4 set, 352 px, PVTv2) would use the
    teacher 01 trained on a CPU runtime (128 px, the offline pair).

    Returns:
        True when the encoder and the image size agree (or the checkpoint records neither).

    Raises:
        CheckpointError: missing, corrupt or unsafe file.
    """
    state = load_checkpoint(path)
    trained = (state.get("train_config") or {}) if isinstance(state, dict) else {}
    role = state.get("role", "model") if isinstance(state, dict) else "model"
    encoder = "teacher_encoder" if role == "teacher" else "student_encoder"
    differ = [f"{name} {trained[key]!r} (this notebook: {getattr(config, key)!r})"
              for key, name in ((encoder, "encoder"), ("image_size", "image size"))
              if key in trained and trained[key] != getattr(config, key)]
    if differ:
        warn_box(f"the {role} checkpoint differs from this notebook's settings",
                 f"{path} was trained with {' and '.join(differ)}. It is used as it is, at "
                 f"{config.image_size} px here: what this notebook shows is that model's, not "
                 "one trained with the settings above. To match, set the parameter cell's "
                 "image_size / encoders (and scale) to the checkpoint's, or train it again "
                 "with these settings (the notebook that made it, resume = False).")
    return not differ


def walkthrough_teacher(config: TrainConfig, teacher: str | os.PathLike[str] | None = None, *,
                        quick_epochs: int = 1, progress: bool = True) -> Path:
    """The teacher checkpoint the notebooks share, or a quick one trained once when it is missing.

    Notebook 01 trains the teacher into ``<config.run_dir>/teacher/``. When that file is
    missing (notebook 01 not run), a quick ``quick_epochs``-epoch teacher is trained into
    ``<config.run_dir>/quick/teacher/`` instead, once: later calls reuse it.

    Args:
        config: the notebook's settings; ``config.run_dir`` is the shared run folder.
        teacher: a checkpoint to use instead of the default path (never trained here).
        quick_epochs: epochs of the quick fallback.
        progress: show progress bars and the per-epoch lines.

    Raises:
        CheckpointError: ``teacher`` is given but does not exist.
    """
    path = _walkthrough_path(teacher, config.run_dir / "teacher" / "best.pth")
    if path.is_file():
        return path
    warn_box("quick stand-in teacher", f"{path} not found: notebook 01 has not trained the "
             f"teacher here. Training a quick {quick_epochs}-epoch teacher instead; what this "
             f"notebook shows is then far from the real teacher's. {_run_first('01')}")
    return train_teacher(_quick(config, quick_epochs), resume=True, progress=progress).best_path


def walkthrough_checkpoints(config: TrainConfig,
                            teacher: str | os.PathLike[str] | None = None,
                            student: str | os.PathLike[str] | None = None, *,
                            quick_epochs: int = 1, progress: bool = True) -> tuple[Path, Path]:
    """The teacher and KDAS-student checkpoints the notebooks share, trained when missing.

    The notebooks keep their runs in ``config.run_dir`` (their ``run_root``): notebook 01 trains
    the teacher into ``teacher/``, notebook 04 the KDAS student into ``kdas/student/``.
    Notebooks 02, 03 and 05 need both and must also run alone, so a missing checkpoint is made
    here, once (later calls reuse it):

    - no teacher: a quick teacher (:func:`walkthrough_teacher`);
    - no student, real teacher: notebook 04's KDAS run itself, with ``config``'s settings and
      its gradient measurements (``probe_gradients``), in ``kdas/`` (notebook 04 then reuses
      it instead of training it again);
    - no student, quick teacher: a quick student in ``quick/student/``.

    Args:
        config: the notebook's settings; ``config.run_dir`` is the shared run folder.
        teacher, student: checkpoints to use instead of the default paths (not trained here).
        quick_epochs: epochs of the quick fallbacks.
        progress: show progress bars and the per-epoch lines.

    Returns:
        ``(teacher_path, student_path)``; a line describing each model
        (:func:`describe_checkpoint`) is printed, and a box when one was trained with another
        encoder or image size than ``config`` (:func:`check_checkpoint`).

    Raises:
        CheckpointError: a given ``teacher`` / ``student`` file does not exist.
    """
    student_path = _walkthrough_path(student, config.run_dir / "kdas" / "student" / "best.pth")
    teacher_path = walkthrough_teacher(config, teacher, quick_epochs=quick_epochs,
                                       progress=progress)
    if not student_path.is_file():
        quick = _quick(config, quick_epochs)
        if teacher_path == quick.run_dir / "teacher" / "best.pth":
            warn_box("quick stand-in student", f"{student_path} not found: distilling a quick "
                     f"{quick_epochs}-epoch student from the quick teacher. {_run_first('01')}")
            run = quick
        else:
            print(f"{student_path} not found: distilling the KDAS student now, as notebook 04 "
                  "does (04 then reuses this run)", flush=True)
            run = config.replace(output_dir=str(config.run_dir / "kdas"))
        student_path = distill(run, teacher_path, resume=True, probe_gradients=True,
                               progress=progress).best_path
    print(describe_checkpoint(teacher_path), describe_checkpoint(student_path), sep="\n")
    for path in (teacher_path, student_path):
        check_checkpoint(path, config)
    return teacher_path, student_path


def _walkthrough_path(given: str | os.PathLike[str] | None, default: Path) -> Path:
    if given is None:
        return default
    if not Path(given).is_file():
        raise CheckpointError(f"checkpoint not found: {given}. Pass an existing file, or "
                              "None for the notebooks' default path")
    return Path(given)


def _quick(config: TrainConfig, epochs: int) -> TrainConfig:
    """The notebooks' quick fallback runs: ``epochs`` epochs in ``<run_dir>/quick``."""
    return config.replace(epochs=epochs, output_dir=str(config.run_dir / "quick"))
