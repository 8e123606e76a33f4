"""The facts a course run states about its checkpoints, in one file, so pages cannot disagree.

``scripts/run_notebooks.py`` executes the notebooks of one run with two environment
variables, which every kernel inherits:

- :data:`RUN_ID_ENV` (``KDAS_RUN_ID``): the run's id, printed by every notebook's setup cell
  (:func:`kdas_lite.colab.course_setup` calls :func:`begin`), so all pages of a run show it;
- :data:`FACTS_ENV` (``KDAS_FACTS``): the run's facts file (JSON). While it is set, the library
  records each number a notebook states about a checkpoint, as it states it:

  - :func:`kdas_lite.walkthrough.describe_checkpoint` (the line describing a loaded model) and
    :func:`kdas_lite.train.fit` (a run trained or reused): ``epochs``, ``image size``,
    ``best epoch``, ``validation Dice``;
  - :func:`kdas_lite.evaluate.evaluate`: every test-set score, named with the evaluation's
    settings (``"test Kvasir meanDic (128 px, opencv)"``).

Outside such a run (a student's own Jupyter) nothing is printed or written.

A checkpoint is keyed by :func:`weights_sha256`, the SHA-256 of its weights (names, dtypes,
shapes and bytes of the state dict): a trained model in memory and the ``best.pth`` it was
saved to share one key, whichever notebook states the fact. The file::

    {"run_id": "2026-12-03-d1959ab-7c1e",
     "checkpoints": {"<sha256>": {"role": "teacher", "files": ["runs/teacher/best.pth"],
                                  "facts": {"validation Dice": {"01": 0.8123, "02": 0.8123},
                                            "test Kvasir meanDic (128 px, opencv)": {"05": 0.81}}}},
     "notebooks": {"04": {"runs": [{"run": "runs/kdas/student", "trained_epochs": 0}]}}}

:func:`disagreements` lists every checkpoint fact that two notebooks state differently;
``tests/test_notebooks_teaching.py`` fails on any, and on pages whose run ids differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kdas_lite.data.io import write_text_atomic

__all__ = ["FACTS_ENV", "RUN_ID_ENV", "TOLERANCE", "begin", "disagreements", "load_facts",
           "new_facts", "page_run_ids", "record", "record_run", "run_id", "weights_sha256"]

RUN_ID_ENV = "KDAS_RUN_ID"
FACTS_ENV = "KDAS_FACTS"
TOLERANCE = 1e-4
"""Two stated floats agree when they differ by at most this: a tenth of the last digit the pages
print (three decimals), above the float noise of one evaluation run twice."""

RUN_ID_LINE = re.compile(r"run id: (\S+)")
"""The line :func:`begin`'s caller prints; :func:`page_run_ids` reads it back from a page."""

_notebook: str | None = None


def run_id() -> str | None:
    """The id of the course run executing this notebook, or None outside one."""
    return os.environ.get(RUN_ID_ENV) or None


def begin(notebook: str) -> str | None:
    """Note which notebook (``"01"`` …) states the facts recorded from now on; returns the
    run id (None outside a course run)."""
    global _notebook
    _notebook = notebook
    return run_id()


def weights_sha256(weights: nn.Module | Mapping[str, Tensor]) -> str:
    """SHA-256 over a state dict's names, dtypes, shapes and bytes (sorted by name): the same
    weights give the same value from a file or from a model in memory. A module that holds its
    weights outside PyTorch (an ONNX file behind :class:`kdas_lite.quantize.OnnxSegmenter`)
    names them by its ``file_sha256`` attribute, the SHA-256 of the file."""
    if isinstance(getattr(weights, "file_sha256", None), str):
        return weights.file_sha256  # type: ignore[union-attr]
    state = weights.state_dict() if isinstance(weights, nn.Module) else weights
    digest = hashlib.sha256()
    for key, value in sorted(state.items()):
        tensor = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}|{tensor.dtype}|{tuple(value.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def new_facts(path: str | os.PathLike[str], run: str) -> Path:
    """Start the facts file of run ``run`` (refused when ``path`` exists: it is another run's)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists: it holds the facts of another run; start the run "
                              "in an empty folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, {"run_id": run, "checkpoints": {}, "notebooks": {}})
    return path


def load_facts(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a facts file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _write(path: Path, facts: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(facts, indent=1, sort_keys=True) + "\n")


def _active() -> Path | None:
    where = os.environ.get(FACTS_ENV)
    return Path(where) if where else None


def _relative(path: str | os.PathLike[str], facts_file: Path) -> str:
    """``path`` relative to the run folder (the facts file's), never a machine path."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(facts_file.resolve().parent).as_posix()
    except ValueError:
        return "/".join(resolved.parts[-3:])


def _clean(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value  # a tensor or numpy scalar


def record(weights: nn.Module | Mapping[str, Tensor], facts: Mapping[str, Any], *,
           role: str | None = None, file: str | os.PathLike[str] | None = None) -> None:
    """Record ``facts`` (name → value, as the page states it) about the checkpoint holding
    ``weights``, stated by the current notebook. A no-op outside a course run."""
    path = _active()
    if path is None or not path.is_file():
        return
    data = load_facts(path)
    entry = data["checkpoints"].setdefault(weights_sha256(weights), {"files": [], "facts": {}})
    if role and "role" not in entry:
        entry["role"] = role
    if file is not None and (name := _relative(file, path)) not in entry["files"]:
        entry["files"].append(name)
    for name, value in facts.items():
        entry["facts"].setdefault(name, {})[_notebook or "?"] = _clean(value)
    _write(path, data)


def record_run(run_dir: str | os.PathLike[str], trained_epochs: int) -> None:
    """Record that the current notebook trained ``trained_epochs`` epochs of the run in
    ``run_dir`` (0: it reused a finished run). A no-op outside a course run."""
    path = _active()
    if path is None or not path.is_file():
        return
    data = load_facts(path)
    notebook = data["notebooks"].setdefault(_notebook or "?", {"runs": []})
    notebook["runs"].append({"run": _relative(run_dir, path), "trained_epochs": trained_epochs})
    _write(path, data)


def _agree(values: list[Any]) -> bool:
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return max(values) - min(values) <= (TOLERANCE if any(isinstance(v, float)
                                                              for v in values) else 0)
    return len({json.dumps(v, sort_keys=True) for v in values}) == 1


def disagreements(facts: Mapping[str, Any]) -> list[str]:
    """One line per checkpoint fact that two notebooks state differently, e.g. ``teacher
    (runs/teacher/best.pth, 3f2a…): test Kvasir meanDic (128 px, opencv): 04 says 0.822, 05
    says 0.814``; empty when the pages agree."""
    lines = []
    for sha, entry in facts.get("checkpoints", {}).items():
        what = f"{entry.get('role', 'model')} ({', '.join(entry.get('files', [])) or 'in memory'}" \
               f", {sha[:8]}…)"
        for name, by_notebook in entry.get("facts", {}).items():
            if not _agree(list(by_notebook.values())):
                said = ", ".join(f"{nb} says {v!r}" for nb, v in sorted(by_notebook.items()))
                lines.append(f"{what}: {name}: {said}")
    return lines


def page_run_ids(text: str) -> set[str]:
    """The run ids a page (its text) prints."""
    return set(RUN_ID_LINE.findall(text))
