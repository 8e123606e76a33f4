"""A training run on disk: what its checkpoints hold, and loading a trained model back.

A run folder (``<output_dir>/<role>/``) holds ``best.pth`` (the best epoch's weights),
``last.pth`` (everything needed to continue: model, optimiser, scheduler, scaler, RNG states,
history, counters; :data:`CHECKPOINT_FORMAT`), ``config.json``, ``history.json`` /
``history.csv`` and, for a distilled student, ``teacher.json``.

- Resuming (:func:`kdas_lite.train.fit` with ``resume=True``) is refused when the stored
  settings differ in anything that changes what is computed, or when the teacher differs:
  a student run records its teacher's identity (:func:`teacher_identity`: encoder, parameter
  count, a SHA-256 of the weights and of the file), and a "teacher" no larger than the student
  is refused unless asked for by name. So is resuming on other data (:func:`data_identity`:
  a SHA-256 of the training files' *content*; the refusal names the files that changed).
- :func:`load_trained` rebuilds the model a checkpoint was saved from (its architecture
  record, checked before anything is built; for a plain state dict such as the authors'
  released weights, the architecture read off its tensor shapes:
  :func:`describe_plain_checkpoint`);
  :func:`trained_image_size` reads the size it was trained at, so inference uses it.
"""


from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kdas_lite.checkpoint_files import load_checkpoint
from kdas_lite.config import MAX_IMAGE_SIZE, TrainConfig
from kdas_lite.data.cache_files import content_hashes
from kdas_lite.data.io import file_sha256, write_text_atomic
from kdas_lite.errors import CheckpointError, TrainingError
from kdas_lite.facts import weights_sha256

__all__ = ["CHECKPOINT_FORMAT", "data_identity", "describe_plain_checkpoint", "load_trained",
           "teacher_identity", "trained_image_size"]

CHECKPOINT_FORMAT = "kdas_lite.train/1"
# Config fields that may change when resuming without changing what is computed (or, for
# ``epochs``, to extend a finished run; the schedule then follows the new length; for
# ``world_size``, the number of torchrun processes, the same global batches are split another
# way, which changes only the data order, the augmentation draws and float rounding).
_RESUMABLE_CHANGES = frozenset({"epochs", "num_workers", "device", "output_dir", "data_root",
                                "compile", "cache", "name", "accumulate_steps",
                                "world_size"})


# ---------------------------------------------------------------------------------------------
# Checkpoint contents
# ---------------------------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    """Global RNG states as tensors / plain lists, loadable with ``weights_only=True``."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available() \
            and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _model_config(model: nn.Module) -> dict[str, Any] | None:
    config = getattr(model, "config", None)
    return config() if callable(config) else None


def _cpu_state_dict(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    write_text_atomic(run_dir / "history.json", json.dumps(history, indent=2))
    buffer = io.StringIO()
    if history:
        writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    write_text_atomic(run_dir / "history.csv", buffer.getvalue())


def _check_resumable(state: dict[str, Any], config: TrainConfig, role: str, path: Path,
                     teacher: dict[str, Any] | None, data: dict[str, Any] | None = None) -> None:
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or not (
            {"model", "optimizer", "scheduler", "scaler", "rng"} <= state.keys()):
        raise CheckpointError(f"{path} is not a kdas_lite training checkpoint (last.pth); "
                              "cannot resume from it. Start without --resume.")
    if state.get("role") != role:
        raise CheckpointError(f"{path} holds a {state.get('role')} run, not a {role} run; "
                              "use another --output folder or start without --resume.")
    saved = state.get("train_config", {})
    now = config.to_dict()
    changed = [f"{k}: {saved.get(k)!r} → {now[k]!r}" for k in now
               if k not in _RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if changed:
        raise CheckpointError(
            f"cannot resume {path}: the configuration differs from the interrupted run "
            f"({'; '.join(changed)}). Resume with the same settings, start a new run in "
            "another --output folder, or replace this one with --overwrite."
        )
    _check_same_data(state, config, path, data)
    saved_teacher = state.get("teacher")
    if saved_teacher is not None and (teacher is None or saved_teacher.get("weights_sha256")
                                      != teacher.get("weights_sha256")):
        raise CheckpointError(
            f"cannot resume {path}: it was distilled from another teacher "
            f"({_describe_teacher(saved_teacher)}) than the one given now "
            f"({_describe_teacher(teacher)}). Resume with the run's own teacher, or start a "
            "new run in another --output folder (or replace this one with --overwrite)."
        )


_SHOW_FILES = 10  # changed files a refusal names before summarising with a count


def data_identity(root: str | os.PathLike[str], pairs: Sequence[tuple[Path, Path]]
                  ) -> dict[str, Any]:
    """What identifies the data a run trains on (stored in its checkpoints, compared on
    resume).

    The content is hashed once and remembered in the cache folder, keyed by each file's size,
    mtime, ctime, inode and device (:func:`~kdas_lite.data.cache_files.content_hashes`), so
    a resumed run rereads only files that changed since.

    Args:
        root: the data root.
        pairs: the ``(image, mask)`` files used for training and validation.

    Returns:
        ``root``, ``pairs`` (count), ``files`` (``"<folder>/<file name>"`` → the first 16 hex
        digits of the SHA-256 of its bytes), ``content_sha256`` over them, and ``sha256`` over
        the names and byte sizes (what checkpoints written before content hashes compare).
        The same files moved to another folder keep both; other bytes change
        ``content_sha256``, even at the same size and modification time.
    """
    ordered = [Path(path) for pair in sorted(pairs) for path in pair]
    names = [f"{path.parent.name}/{path.name}" for path in ordered]
    files = {name: digest[:16] for name, digest in zip(names, content_hashes(ordered),
                                                        strict=True)}
    digest = hashlib.sha256()
    for path in ordered:
        digest.update(f"{path.name}|{path.stat().st_size}\n".encode())
    content = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"root": str(root), "pairs": len(pairs), "sha256": digest.hexdigest(),
            "content_sha256": content, "files": files}


def _changed_files(then: dict[str, Any], now: dict[str, Any]) -> str:
    """The files whose content differs between two :func:`data_identity` records, as one
    phrase (at most :data:`_SHOW_FILES` names, then a count)."""
    before, after = then.get("files") or {}, now["files"]
    parts = []
    for what, names in (("changed", [n for n in after if n in before and before[n] != after[n]]),
                        ("new", [n for n in after if n not in before]),
                        ("missing", [n for n in before if n not in after])):
        if names:
            more = f" and {len(names) - _SHOW_FILES} more" if len(names) > _SHOW_FILES else ""
            parts.append(f"{len(names)} {what}: {', '.join(sorted(names)[:_SHOW_FILES])}{more}")
    return "; ".join(parts) or "other files"


def _check_same_data(state: dict[str, Any], config: TrainConfig, path: Path,
                     data: dict[str, Any] | None) -> None:
    """Refuse to resume on other data: the run would mix two datasets, and images of the
    new data's test sets may have been trained on before the interruption."""
    saved = state.get("data")
    if isinstance(saved, dict) and data is not None:
        if "content_sha256" in saved:  # the files' bytes
            same = saved["content_sha256"] == data["content_sha256"]
            other = _changed_files(saved, data)
        else:  # a checkpoint written before content hashes: names and sizes
            same, other = saved.get("sha256") == data["sha256"], "other files"
        then = f"{saved.get('root')} ({saved.get('pairs')} images)"
        now = f"{data['root']} ({data['pairs']} images, {other})"
    else:  # a checkpoint written before data identities were recorded: compare the roots
        then = state.get("train_config", {}).get("data_root")
        now = config.data_root
        same = then is None or now is None or \
            Path(then).expanduser().resolve() == Path(now).expanduser().resolve()
    if not same:
        raise CheckpointError(
            f"cannot resume {path}: it was trained on {then}, the data given now is {now}. "
            f"Resume with the run's own data (--data), start a new run in another --output "
            "folder, or replace this one with --overwrite."
        )


# ---------------------------------------------------------------------------------------------
# The teacher's identity
# ---------------------------------------------------------------------------------------------
def teacher_identity(teacher: nn.Module, path: str | os.PathLike[str] | None = None
                     ) -> dict[str, Any]:
    """What identifies a teacher in a distillation run (stored in its checkpoints and
    ``teacher.json``, compared on resume).

    Args:
        teacher: the teacher model.
        path: the checkpoint it was loaded from, if any.

    Returns:
        ``encoder`` (timm name, or the class name), ``params`` (count), ``weights_sha256``
        (SHA-256 over the state dict's names, dtypes, shapes and bytes: the same weights give
        the same value whether they came from a file or a model in memory) and, with ``path``,
        ``file`` and ``file_sha256``.
    """
    identity: dict[str, Any] = {
        "encoder": getattr(teacher, "encoder_name", type(teacher).__name__),
        "params": sum(p.numel() for p in teacher.parameters()),
        "weights_sha256": weights_sha256(teacher),
    }
    if path is not None:
        identity.update(file=str(path), file_sha256=file_sha256(path))
    return identity


def _describe_teacher(identity: dict[str, Any] | None) -> str:
    if identity is None:
        return "none"
    where = f"{identity['file']}, " if identity.get("file") else ""
    return f"{identity['encoder']}, {where}weights sha256 {identity['weights_sha256'][:12]}…"


def _check_teacher_size(teacher: nn.Module, student: nn.Module, config: TrainConfig,
                        source: str) -> None:
    """Refuse a "teacher" that is no larger than the student unless the config names its
    encoder as the teacher's (then distil anyway, with a warning).

    Raises:
        TrainingError: e.g. a student checkpoint passed as the teacher by mistake.
    """
    t_params = sum(p.numel() for p in teacher.parameters())
    s_params = sum(p.numel() for p in student.parameters())
    if t_params > s_params:
        return
    t_enc = getattr(teacher, "encoder_name", type(teacher).__name__)
    s_enc = getattr(student, "encoder_name", type(student).__name__)
    problem = (f"the teacher {source}({t_enc}, {t_params / 1e6:.2f} M parameters) is no larger "
               f"than the student ({s_enc}, {s_params / 1e6:.2f} M)")
    if t_enc != config.teacher_encoder:
        raise TrainingError(
            f"{problem}: it looks like a student checkpoint. Pass the teacher's checkpoint "
            "(e.g. runs/<name>/teacher/best.pth), or set teacher_encoder (--teacher-encoder "
            f"{t_enc}) to distil from a same-size teacher on purpose."
        )
    warnings.warn(f"{problem}; distilling anyway, as teacher_encoder={t_enc!r} asks",
                  UserWarning, stacklevel=3)



def trained_image_size(path: str | os.PathLike[str]) -> int | None:
    """The side (px) a kdas_lite checkpoint was trained at (``train_config.image_size``), or
    None for a file without a training config (e.g. the authors' released weights).

    Raises:
        CheckpointError: missing, corrupt or unsafe file, or a recorded size that is not a
            multiple of 32 from 32 to :data:`~kdas_lite.config.MAX_IMAGE_SIZE` (inference
            would run at it: 8192 px exhausts memory).
    """
    from kdas_lite.hub import is_package, package_config

    if is_package(path):  # a kdas-lite package folder or Hub repository id
        return package_config(path).get("image_size")
    return _recorded_image_size(load_checkpoint(path), Path(path))


def _recorded_image_size(state: Any, path: Path) -> int | None:
    train_config = state.get("train_config") if isinstance(state, dict) else None
    if not isinstance(train_config, dict) or "image_size" not in train_config:
        return None
    size = train_config["image_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size % 32 or not (
            32 <= size <= MAX_IMAGE_SIZE):
        raise CheckpointError(
            f"{path} records the training size image_size={size!r:.40}; kdas_lite trains and "
            f"runs at multiples of 32 from 32 to {MAX_IMAGE_SIZE} px. The file is damaged or "
            "not a kdas_lite checkpoint."
        )
    return size


def _plain_architecture(state: Any) -> tuple[dict[str, Any], str] | None:
    """``(PolypPVT config, what it is)`` of a state dict without an architecture record,
    read off its tensor shapes (the authors' released weights), or None."""
    from kdas_lite.models.authors import AUTHORS_ENCODERS
    from kdas_lite.models.key_maps import infer_polyp_pvt_config

    try:
        config = infer_polyp_pvt_config(state) if isinstance(state, dict) else None
    except CheckpointError:  # not a state dict (e.g. non-string keys)
        return None
    if config is None:
        return None
    role = {encoder: role for role, encoder in AUTHORS_ENCODERS.items()}.get(config["encoder"])
    what = (f"the KDAS {role}, Polyp-PVT on {config['encoder']} (a plain state dict like the "
            f"authors' released {role}: the architecture is read from its weights)" if role else
            f"Polyp-PVT on {config['encoder']} (a plain state dict: the architecture is read "
            "from its weights)")
    return config, what


def _architecture(state: Any, path: Path) -> dict[str, Any]:
    """The PolypPVT keyword arguments of a loaded checkpoint, checked before anything is
    built (:func:`~kdas_lite.models.polyp_pvt.validate_config`)."""
    from kdas_lite.models.polyp_pvt import validate_config

    if isinstance(state, dict) and "arch" in state:
        return validate_config(state["arch"], source=f"{path} ('arch')")
    plain = _plain_architecture(state)
    if plain is None:
        raise CheckpointError(
            f"{path} has no architecture description ('arch') and its weights are not a "
            "Polyp-PVT on a known encoder (such as the authors' PVTv2-b2 teacher or PVTv2-b0 "
            "student): it is not a kdas_lite training checkpoint. Build the matching model and "
            "pass it as model=..., or use kdas_lite.models.load_polyp_pvt_checkpoint."
        )
    return validate_config(plain[0], source=str(path))


def describe_plain_checkpoint(path: str | os.PathLike[str]) -> str | None:
    """What model a checkpoint without an architecture record holds, in words, e.g. ``"the
    KDAS teacher, Polyp-PVT on pvt_v2_b2 (a plain state dict like the authors' released
    teacher ...)"``; None for a file with a record or weights of no known Polyp-PVT.

    Raises:
        CheckpointError: missing, corrupt or unsafe file.
    """
    from kdas_lite.hub import is_package

    if is_package(path):
        return None
    state = load_checkpoint(path)
    if isinstance(state, dict) and "arch" in state:
        return None
    plain = _plain_architecture(state)
    return None if plain is None else plain[1]


def load_trained(path: str | os.PathLike[str], device: str | torch.device = "cpu", *,
                 model: nn.Module | None = None) -> nn.Module:
    """Rebuild the model stored in a kdas_lite checkpoint (``best.pth`` / ``last.pth``), or
    in a package folder / Hub repository id of ``kdas-lite package``
    (:func:`kdas_lite.hub.load_package`: safetensors, nothing unpickled).

    The architecture comes from the checkpoint's ``arch`` entry (``PolypPVT.config()``) or, for
    a plain state dict such as the authors' released teacher (PVTv2-b2) and student (PVTv2-b0),
    from its tensor shapes. It is checked before anything is built (known encoder, decoder
    width, recorded training size), so a hostile file cannot make a huge model. The weights
    are loaded strictly through :func:`kdas_lite.models.load_polyp_pvt_checkpoint`. The model
    is returned in eval mode.

    Args:
        path: the checkpoint.
        device: where the model goes.
        model: load into this model instead of rebuilding one (e.g. to insist on a student
            architecture, or an encoder outside
            :data:`~kdas_lite.models.polyp_pvt.KNOWN_ENCODERS`).

    Raises:
        CheckpointError: missing, corrupt, unsafe or foreign file, an architecture record that
            asks for an unknown encoder, an out-of-range width or training size, or weights
            that do not fit the architecture (the message lists the missing / unexpected keys
            and shape mismatches, and which encoder the file looks like).
    """
    from kdas_lite.hub import is_package, load_package
    from kdas_lite.models import PolypPVT, load_polyp_pvt_checkpoint

    if model is None and is_package(path):  # safetensors: nothing is unpickled
        return load_package(path, device)
    path = Path(path)
    if model is None:
        state = load_checkpoint(path)
        _recorded_image_size(state, path)
        kwargs = _architecture(state, path)
        del state
        try:
            model = PolypPVT(**kwargs)
        except Exception as exc:  # the description comes from the file: any value is possible
            raise CheckpointError(f"{path} describes an architecture that cannot be built "
                                  f"({type(exc).__name__}: {exc}); it is damaged or not a "
                                  "kdas_lite checkpoint.") from exc
    load_polyp_pvt_checkpoint(model, path)  # reads the file again: errors then name it
    return model.to(torch.device(device)).eval()
