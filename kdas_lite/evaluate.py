"""Paper-style evaluation: run a model over the test sets and tabulate the polyp protocol.

:func:`evaluate` reproduces the test pipeline of Polyp-PVT's ``Test.py`` (which KDAS reuses)
and then scores with :mod:`kdas_lite.metrics`:

1. each test image is resized to ``size × size`` (352) and normalised with the model's
   ``input_mean`` / ``input_std``. The resize is named in every table (``resize``):
   ``"opencv"`` (default) is OpenCV's bilinear ``INTER_LINEAR`` without antialiasing, the
   resize kdas_lite also trains with; ``"pil"`` is PIL's antialiased bilinear resize, which the
   public loader uses (torchvision ``transforms.Resize`` on a PIL image in ``test_dataset`` of
   PraNet's ``utils/dataloader.py``, which Polyp-PVT's and KDAS's ``Test.py`` import). Use
   ``"pil"`` to score the authors' released checkpoints as they were scored. On a downscale
   the two differ (OpenCV samples 2×2 pixels, PIL averages the whole footprint);
2. the model (eval mode, ``torch.inference_mode``, float32 as the public code scores; mixed
   precision only when asked, ``precision="float16"``/``"bfloat16"``, and then named in the
   table's caption and CSV) returns the logits
   ``(P1, P2)``; the map is built from **the sum of both heads' logits**, ``P1 + P2`` (the
   Polyp-PVT/KDAS convention; ``head="p1"``/``"p2"`` scores one head alone);
3. the logits are resized **bilinearly to the mask's original size** (``align_corners=False``)
   and passed through a sigmoid — resize first, then sigmoid, as ``Test.py`` does;
4. each map is **min–max normalised per image**, ``(S − min S) / (max S − min S + 1e-8)``, as
   ``Test.py`` does before saving it (and as the MATLAB evaluation does again on reading it);
   ``minmax=False`` keeps the raw probabilities instead. Min–max stretches every map to the
   full [0, 1] range, so even a map without any confident pixel has foreground at the high
   thresholds: for such maps it changes the thresholded scores and MAE;
5. the maps are scored against the masks with :class:`~kdas_lite.metrics.MetricAccumulator`.
   Maps are scored as floats: the reference pipeline's round trip through 8-bit PNG files is
   skipped. That round trip moves each value by at most 0.5/255, but the thresholded measures
   (meanDic at 256 thresholds) move with every value that crosses a threshold, so the scores
   move too, by an amount that depends on the maps: +0.0003 (Kvasir) and +0.0005
   (CVC-ClinicDB) mDice for a cpu-lab teacher of notebook 01 at 128 px (rounding each map to
   ``round(255·p)/255``), about 0.0016 on the real maps measured in issue 19 — visible at
   three decimals, so compare such tables at two.

The same run measures the model's parameter count and its forward throughput (images/s at
``size``, batch ``batch_size``, timed around the forward pass only, synchronised on CUDA; the
first batch is a warm-up and is not timed unless it is the only one).

The result is an :class:`EvaluationTable` (rows = test sets, columns = the metrics of
:data:`~kdas_lite.metrics.METRIC_NAMES` and ``n_images``). The papers report each test set on
its own; :meth:`EvaluationTable.average` (shown as a labelled last row by
:meth:`~EvaluationTable.to_markdown`) is the **image-weighted** mean of the rows — equal to the
mean over all test images for every metric except the ``max*`` ones, whose threshold is chosen
per test set. :func:`compare_with_paper` puts our mDice next to the published one, and
:func:`comparison_table` puts several models side by side.

**What the data is, everywhere a score appears.** Every row carries the
:class:`~kdas_lite.data.SetStatus` of its test set: a partial set is shown as
``ETIS-LaribPolypDB (20/196)`` with a footnote that it is not comparable with published
full-set scores, an inferred one as ``CVC-300 (inferred)``, and tables of synthetic data open
with a **SYNTHETIC** line — in Markdown, in CSV (``label``, ``status``, ``expected`` columns)
and in the figures of :mod:`kdas_lite.viz` that read these tables.
"""

from __future__ import annotations

import csv
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from kdas_lite import facts
from kdas_lite.data.dataset import PolypTestDataset, collate_test, default_cache_dir
from kdas_lite.data.io import DataWarning
from kdas_lite.data.registry import TEST_SETS, SetStatus, set_status
from kdas_lite.errors import DataError, KDASError
from kdas_lite.metrics import METRIC_NAMES, MetricAccumulator, default_workers

__all__ = [
    "PAPER_RESULTS",
    "PAPER_SOURCES",
    "PRECISIONS",
    "RESIZE_LABELS",
    "SYNTHETIC_NOTE",
    "EvaluationTable",
    "compare_with_paper",
    "comparison_table",
    "evaluate",
    "soft_maps",
]

Head = Literal["sum", "p1", "p2"]
Resize = Literal["opencv", "pil"]

RESIZE_LABELS: dict[str, str] = {
    "opencv": "OpenCV bilinear, no antialiasing",
    "pil": "PIL bilinear, antialiased (as the public test loader)",
}
"""How each ``resize`` of :func:`evaluate` is named in the tables."""

PAPER_RESULTS: dict[str, dict[str, dict[str, float]]] = {
    "teacher": {
        "Kvasir": {"meanDic": 0.917},
        "CVC-ClinicDB": {"meanDic": 0.937},
        "CVC-ColonDB": {"meanDic": 0.808},
        "CVC-300": {"meanDic": 0.900},
        "ETIS-LaribPolypDB": {"meanDic": 0.787},
    },
    "student": {
        "Kvasir": {"meanDic": 0.913},
        "CVC-ClinicDB": {"meanDic": 0.925},
        "CVC-ColonDB": {"meanDic": 0.759},
        "ETIS-LaribPolypDB": {"meanDic": 0.755},
    },
}
"""Published mDice, by model then test set (the KDAS paper reports no CVC-300 student score)."""

PAPER_SOURCES: dict[str, str] = {
    "teacher": "Polyp-PVT teacher (PVTv2-b2), Dong et al. 2021, as reported in KDAS",
    "student": "KDAS student (PVTv2-b0), Trinh, Nguyen & Vo Thi, ICME 2024",
}
"""Where each entry of :data:`PAPER_RESULTS` comes from."""

_META_COLUMNS = ("model", "params", "images_per_s", "size", "device")
_SET_COLUMNS = ("label", "status", "expected")  # optional on reading (older tables lack them)
_RESIZE_COLUMN = "resize"  # optional on reading too
_PRECISION_COLUMN = "precision"  # optional on reading: older tables were all scored in float32
PRECISIONS = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}
"""Precision of the forward pass of :func:`evaluate` → autocast dtype (None: plain float32)."""

SYNTHETIC_NOTE = ("**SYNTHETIC data** (procedurally drawn, not real endoscopy): these scores "
                  "show that the pipeline works and say nothing about real polyps.")
"""The first line of every table made from synthetic data."""


def _notes(statuses: Iterable[SetStatus]) -> list[str]:
    """The SYNTHETIC line and one footnote per partial/inferred set (each once)."""
    statuses = list(statuses)
    notes = [SYNTHETIC_NOTE] if any(s.status == "synthetic" for s in statuses) else []
    return notes + list(dict.fromkeys(s.caveat for s in statuses if s.caveat))


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------
@dataclass
class EvaluationTable:
    """Per-test-set scores of one model, with its size and speed.

    Attributes:
        rows: test set → ``{metric: value}`` for the names of
            :data:`~kdas_lite.metrics.METRIC_NAMES`, in evaluation order.
        n_images: test set → number of images scored.
        model_name: shown in captions and written to CSV.
        params: parameter count of the model (None if unknown).
        images_per_s: forward throughput measured during the run (None if unknown).
        size: input side the model ran at.
        device: where it ran, e.g. ``"cuda"`` or ``"cpu"`` (throughput depends on it).
        status: test set → :class:`~kdas_lite.data.SetStatus` (complete / partial / inferred /
            synthetic); a set without one is shown by its bare name.
        resize: how the images were resized to ``size`` (a key of :data:`RESIZE_LABELS`;
            None: unknown, e.g. a table read from an older CSV).
        image_dice: test set → ``{image stem: mDice of that image}`` (the mean of the image's
            Dice curve over the 256 thresholds; a set's ``meanDic`` is their mean), filled by
            :func:`evaluate` for paired per-image statistics; not part of :meth:`to_dict`.
        precision: the forward pass's precision, a key of :data:`PRECISIONS` (``"float32"``
            unless mixed precision was asked for; the caption names any other).
    """

    rows: dict[str, dict[str, float]]
    n_images: dict[str, int]
    model_name: str = "model"
    params: int | None = None
    images_per_s: float | None = None
    size: int | None = None
    device: str | None = None
    status: dict[str, SetStatus] = field(default_factory=dict)
    image_dice: dict[str, dict[str, float]] = field(default_factory=dict)
    precision: str = "float32"
    resize: str | None = None

    def __post_init__(self) -> None:
        if set(self.rows) != set(self.n_images):
            raise ValueError("rows and n_images must name the same test sets")

    def label(self, dataset: str) -> str:
        """How ``dataset`` is shown: its :attr:`SetStatus.label` (e.g. ``ETIS-LaribPolypDB
        (20/196)``), or the bare name."""
        return self.status[dataset].label if dataset in self.status else dataset

    @property
    def synthetic(self) -> bool:
        """True when any row was scored on synthetic data."""
        return any(s.status == "synthetic" for s in self.status.values())

    def notes(self) -> list[str]:
        """The SYNTHETIC line and the subset/inferred footnotes of this table."""
        return _notes(self.status[d] for d in self.rows if d in self.status)

    @property
    def datasets(self) -> list[str]:
        """The test sets, in row order."""
        return list(self.rows)

    def average(self) -> dict[str, float]:
        """Image-weighted mean of the rows (see the module docstring for what it means)."""
        total = sum(self.n_images.values())
        if total == 0:
            raise ValueError("the table has no images to average")
        return {m: sum(self.rows[d][m] * self.n_images[d] for d in self.rows) / total
                for m in METRIC_NAMES}

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable content."""
        return {
            "model": self.model_name, "params": self.params, "images_per_s": self.images_per_s,
            "size": self.size, "device": self.device, "precision": self.precision,
            "resize": self.resize,
            "datasets": {d: {**self.rows[d], "n_images": self.n_images[d], "label": self.label(d),
                             "status": self.status[d].status if d in self.status else None,
                             "expected": self.status[d].expected if d in self.status else None}
                         for d in self.rows},
        }

    def caption(self) -> str:
        """One line: model, parameters, speed, and how the images were resized."""
        parts = [f"**{self.model_name}**"]
        if self.params is not None:
            parts.append(f"{self.params / 1e6:.2f} M parameters")
        if self.images_per_s is not None:
            where = f" on {self.device}" if self.device else ""
            at = f" at {self.size}×{self.size}" if self.size else ""
            parts.append(f"{self.images_per_s:.1f} images/s{at}{where}")
        if self.resize is not None:
            parts.append(f"resize: {RESIZE_LABELS.get(self.resize, self.resize)}")
        if self.precision != "float32":
            parts.append(f"mixed precision ({self.precision})")
        return " — ".join(parts)

    def to_markdown(self, digits: int = 3, average: bool = True) -> str:
        """A Markdown table: one row per test set, labelled with its status (+ a labelled
        image-weighted average row when ``average`` and there are several sets), preceded by
        :meth:`caption` and followed by the SYNTHETIC / subset notes (:meth:`notes`)."""
        header = ["dataset", "n", *METRIC_NAMES]
        lines = [self.caption(), "", "| " + " | ".join(header) + " |",
                 "| --- | " + " | ".join("---:" for _ in header[1:]) + " |"]
        notes = self.notes()
        if self.synthetic:
            lines = [notes.pop(0), "", *lines]

        def row(label: str, n: int, values: Mapping[str, float]) -> str:
            cells = [label, str(n), *(f"{values[m]:.{digits}f}" for m in METRIC_NAMES)]
            return "| " + " | ".join(cells) + " |"

        lines += [row(self.label(d), self.n_images[d], self.rows[d]) for d in self.rows]
        if average and len(self.rows) > 1:
            lines.append(row("*average (image-weighted)*", sum(self.n_images.values()),
                             self.average()))
        return "\n".join(lines + (["", *notes] if notes else []))

    def _repr_markdown_(self) -> str:  # rendered by Jupyter
        return self.to_markdown()

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write one line per test set: dataset, n_images, the metrics (full precision), then
        the model's name, params, images_per_s, size and device (repeated on every line, so
        tables of several models can be concatenated), the precision of the forward pass,
        then the set's label, status
        (complete / partial / inferred / synthetic) and benchmark size, and the resize."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = [self.model_name, self.params, self.images_per_s, self.size, self.device]
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["dataset", "n_images", *METRIC_NAMES, *_META_COLUMNS,
                             _PRECISION_COLUMN, *_SET_COLUMNS, _RESIZE_COLUMN])
            for d in self.rows:
                values = [repr(float(self.rows[d][m])) for m in METRIC_NAMES]
                status = self.status.get(d)
                where = [self.label(d), status.status if status else "",
                         "" if status is None or status.expected is None else status.expected]
                writer.writerow([d, self.n_images[d], *values,
                                 *("" if v is None else v for v in meta), self.precision,
                                 *where, self.resize or ""])
        return path

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> EvaluationTable:
        """Read a file written by :meth:`to_csv`.

        Raises:
            DataError: the file is missing, empty, or not an evaluation table.
        """
        path = Path(path)
        try:
            with path.open(newline="") as handle:
                records = list(csv.DictReader(handle))
                columns = records[0].keys() if records else ()
        except FileNotFoundError as exc:
            raise DataError(f"evaluation table not found: {path}") from exc
        missing = [c for c in ("dataset", "n_images", *METRIC_NAMES, *_META_COLUMNS)
                   if c not in columns]
        if missing:
            raise DataError(f"{path} is not a kdas_lite evaluation table (written by "
                            f"EvaluationTable.to_csv): missing column(s) {', '.join(missing)}")
        try:
            rows = {r["dataset"]: {m: float(r[m]) for m in METRIC_NAMES} for r in records}
            n_images = {r["dataset"]: int(r["n_images"]) for r in records}
            status = {r["dataset"]: SetStatus(r["dataset"], int(r["n_images"]),
                                              int(r["expected"]) if r["expected"] else None,
                                              r["status"])
                      for r in records if r.get("status")}
            first = records[0]
            return cls(
                rows, n_images, model_name=first["model"],
                params=int(first["params"]) if first["params"] else None,
                images_per_s=float(first["images_per_s"]) if first["images_per_s"] else None,
                size=int(first["size"]) if first["size"] else None,
                device=first["device"] or None, status=status,
                resize=first.get(_RESIZE_COLUMN) or None,
                precision=first.get(_PRECISION_COLUMN) or "float32",
            )
        except ValueError as exc:
            raise DataError(f"{path}: unreadable value in the evaluation table ({exc})") from exc


def compare_with_paper(table: EvaluationTable, which: Literal["student", "teacher"] = "student",
                       digits: int = 3) -> str:
    """Markdown table of our mDice next to the published one, with the difference.

    Args:
        table: our results.
        which: ``"student"`` (KDAS, PVTv2-b0) or ``"teacher"`` (Polyp-PVT, PVTv2-b2).
        digits: decimals shown.

    Returns:
        Markdown with one row per test set in ``table`` or in the paper (``—`` where one side
        has no number). Rows keep their status labels, e.g. ``ETIS-LaribPolypDB (20/196)``,
        with a footnote saying that a subset is not comparable with the full-set number, and
        the table opens with the SYNTHETIC line for synthetic data.
    """
    if which not in PAPER_RESULTS:
        raise ValueError(f"which must be one of {sorted(PAPER_RESULTS)}, got {which!r}")
    paper = PAPER_RESULTS[which]
    names = table.datasets + [d for d in paper if d not in table.rows]

    def fmt(value: float | None, signed: bool = False) -> str:
        if value is None:
            return "—"
        return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"

    notes = table.notes()
    lines = [notes.pop(0), ""] if table.synthetic else []
    resize = (f" · resize: {RESIZE_LABELS.get(table.resize, table.resize)}" if table.resize
              else "")
    lines += [f"ours: {table.model_name}{resize} · paper: {PAPER_SOURCES[which]}", "",
              "| dataset | ours meanDic | paper meanDic (full set) | ours − paper |",
              "| --- | ---: | ---: | ---: |"]
    for d in names:
        ours = table.rows[d]["meanDic"] if d in table.rows else None
        ref = paper.get(d, {}).get("meanDic")
        comparable = d not in table.status or table.status[d].comparable
        diff = ours - ref if ours is not None and ref is not None and comparable else None
        lines.append(f"| {table.label(d)} | {fmt(ours)} | {fmt(ref)} | "
                     f"{fmt(diff, signed=True) if comparable else 'not comparable'} |")
    return "\n".join(lines + (["", *notes] if notes else []))


def comparison_table(tables: Mapping[str, EvaluationTable], metric: str = "meanDic",
                     digits: int = 3) -> str:
    """Paper-style Markdown table: one row per model, one column per test set.

    Args:
        tables: label → :class:`EvaluationTable`.
        metric: the metric shown per test set (paper: mean Dice).
        digits: decimals shown.

    Returns:
        Columns: model, parameters (M), images/s, each test set (headed by its status label,
        e.g. ``ETIS-LaribPolypDB (20/196)``), image-weighted average; the SYNTHETIC line first
        and the subset footnotes last where they apply.
    """
    sets = list(dict.fromkeys(d for table in tables.values() for d in table.datasets))
    status = {d: t.status[d] for t in tables.values() for d in t.datasets if d in t.status}
    labels = [status[d].label if d in status else d for d in sets]
    header = ["model", "params (M)", "images/s", *labels, "average"]
    notes = _notes(status.values())
    lines = [notes.pop(0), ""] if any(s.status == "synthetic" for s in status.values()) else []
    lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for label, table in tables.items():
        speed = f"{table.images_per_s:.1f}" if table.images_per_s else "—"
        params = f"{table.params / 1e6:.2f}" if table.params else "—"
        cells = [f"{table.rows[d][metric]:.{digits}f}" if d in table.rows else "—" for d in sets]
        average = f"{table.average()[metric]:.{digits}f}"
        lines.append("| " + " | ".join([label, params, speed, *cells, average]) + " |")
    resizes = sorted({RESIZE_LABELS.get(t.resize, t.resize) for t in tables.values()
                      if t.resize})
    if resizes:
        notes.insert(0, f"Images resized with {' / '.join(resizes)}.")
    return "\n".join(lines + (["", *notes] if notes else []))


# ---------------------------------------------------------------------------------------------
# Running a model
# ---------------------------------------------------------------------------------------------
def _present_sets(root: Path) -> list[str]:
    """Every test set folder under ``root`` (``TestDataset/<name>`` or ``<name>``): the
    standard ones in table order, then any other folder of ``TestDataset/``."""
    known = [n for n in TEST_SETS if (root / "TestDataset" / n).is_dir() or (root / n).is_dir()]
    extra = root / "TestDataset"
    return known + (sorted(p.name for p in extra.iterdir() if p.is_dir() and p.name not in known)
                    if extra.is_dir() else [])


def _resolve_sets(data_root_or_sets: str | os.PathLike[str] | Mapping[str, Any],
                  test_sets: Sequence[str] | None) -> dict[str, Path]:
    """Test set name → folder with ``images/`` and ``masks/``."""
    if isinstance(data_root_or_sets, Mapping):
        folders = {str(k): Path(v).expanduser() for k, v in data_root_or_sets.items()}
        names = list(folders) if test_sets is None else list(test_sets)
        unknown = [n for n in names if n not in folders]
        if unknown:
            raise ValueError(f"test_sets {unknown} are not keys of the given folders "
                             f"{sorted(folders)}")
        chosen = {n: folders[n] for n in names}
    else:
        root = Path(data_root_or_sets).expanduser()
        names = list(TEST_SETS if test_sets is None else test_sets)
        chosen, missing = {}, []
        for n in names:
            found = next((c for c in (root / "TestDataset" / n, root / n) if c.is_dir()), None)
            if found is None:
                missing.append(n)
            else:
                chosen[n] = found
        where = (f"expected {root}/TestDataset/<name>/images and .../masks (PraNet layout; "
                 "datasets/README.md says where to get each set)")
        if missing and (test_sets is not None or not chosen):
            present = ", ".join(_present_sets(root)) or "none"
            raise DataError(f"test set(s) {', '.join(missing)} not found under {root}: {where}. "
                            f"Test sets present: {present}.")
        if missing:
            warnings.warn(f"test set(s) not found under {root}: {', '.join(missing)}; "
                          f"evaluating the {len(chosen)} present ({', '.join(chosen)})",
                          DataWarning, stacklevel=3)
    if not chosen:
        raise ValueError("no test set to evaluate (test_sets is empty)")
    return chosen


class _PILResize:
    """The public test loader's image transform: PIL's antialiased bilinear resize to
    ``size × size``, then ``ToTensor`` and ``Normalize`` (PraNet ``utils/dataloader.py``,
    ``test_dataset``: ``transforms.Resize((testsize, testsize))`` on a PIL image).

    Called like kdas_lite's transforms, ``transform(image=uint8 (H, W, 3))["image"]`` →
    float32 tensor ``(3, size, size)``.
    """

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __call__(self, image: np.ndarray, **_: Any) -> dict[str, Tensor]:
        resized = Image.fromarray(np.ascontiguousarray(image)).resize(
            (self.size, self.size), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.array(resized, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return {"image": (x - self.mean) / self.std}


@dataclass
class _ForwardTimer:
    """Forward-pass seconds and images, skipping the first (warm-up) batch when possible."""

    device: torch.device
    seconds: float = 0.0
    images: int = 0
    warmup: tuple[float, int] | None = None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, model: nn.Module, x: Tensor) -> Any:
        self._sync()
        start = time.perf_counter()
        out = model(x)
        self._sync()
        elapsed = time.perf_counter() - start
        if self.warmup is None:
            self.warmup = (elapsed, x.shape[0])
        else:
            self.seconds += elapsed
            self.images += x.shape[0]
        return out

    def images_per_s(self) -> float | None:
        seconds, images = (self.seconds, self.images) if self.images else (self.warmup or (0, 0))
        return images / seconds if seconds > 0 else None


def _logits(out: Any, head: Head) -> Tensor:
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise TypeError("the model must return the logits (P1, P2), two (B, 1, H, W) tensors; "
                        f"got {type(out).__name__}")
    p1, p2 = (p.float() for p in out)
    if head == "p1":
        return p1
    if head == "p2":
        return p2
    return p1 + p2


def soft_maps(logits: Tensor, sizes: Iterable[tuple[int, int]],
              minmax: bool = True) -> list[np.ndarray]:
    """Turn a batch of logits into Polyp-PVT ``Test.py`` prediction maps.

    Args:
        logits: ``(B, 1, S, S)`` logits (e.g. ``P1 + P2``).
        sizes: the B original mask sizes ``(H0, W0)``.
        minmax: min–max normalise each map (``(S − min) / (max − min + 1e-8)``).

    Returns:
        B float32 arrays ``(H0, W0)`` in [0, 1]: bilinear resize of the logits, then sigmoid.
    """
    maps = []
    for logit, size in zip(logits, sizes, strict=True):
        prob = F.interpolate(logit[None].float(), size=tuple(size), mode="bilinear",
                             align_corners=False).sigmoid()[0, 0]
        if minmax:
            prob = (prob - prob.min()) / (prob.max() - prob.min() + 1e-8)
        maps.append(prob.cpu().numpy())
    return maps


def evaluate(
    model: nn.Module,
    data_root_or_sets: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
    size: int = 352,
    device: str | torch.device | None = None,
    batch_size: int = 8,
    test_sets: Sequence[str] | None = None,
    progress: bool = True,
    *,
    head: Head = "sum",
    minmax: bool = True,
    num_workers: int = 0,
    name: str | None = None,
    precision: str = "float32",
    resize: Resize = "opencv",
    workers: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> EvaluationTable:
    """Evaluate a segmentation model on polyp test sets with the standard protocol.

    Args:
        model: returns the logits ``(P1, P2)`` for ``(B, 3, size, size)`` images and has
            ``input_mean`` / ``input_std`` (every kdas_lite model does). It is moved to
            ``device`` and left there; its train/eval mode is restored afterwards.
        data_root_or_sets: a data root in the PraNet layout (test sets under
            ``<root>/TestDataset/<name>``, or directly ``<root>/<name>``), or a dict
            ``{name: folder}`` of folders that hold ``images/`` and ``masks/``.
        size: input side (352 in the papers).
        device: default CUDA when available, else CPU.
        batch_size: images per forward pass.
        test_sets: names to evaluate, in this order (each must exist); default those of the
            five :data:`~kdas_lite.data.registry.TEST_SETS` that are present under the root
            (a :class:`~kdas_lite.data.DataWarning` names the missing ones), or every key of
            the dict.
        progress: show a progress bar per test set.
        head: ``"sum"`` (``P1 + P2``, the Polyp-PVT/KDAS convention), ``"p1"`` or ``"p2"``.
        minmax: min–max normalise each map as Polyp-PVT's ``Test.py`` (default True).
        num_workers: DataLoader workers decoding images.
        name: model name for the table (default: ``type(model).__name__``).
        resize: how each image is resized to ``size`` (the module docstring, step 1):
            ``"opencv"`` (bilinear, no antialiasing; kdas_lite's training resize) or
            ``"pil"`` (PIL's antialiased bilinear, as the public test loader: use it for the
            authors' released checkpoints). The table names it.
        precision: ``"float32"`` (default: the public code and the papers' protocol score in
            float32), or mixed precision, ``"float16"`` / ``"bfloat16"`` (autocast; faster on
            a GPU, and the table's caption and CSV then name it).
        workers: threads that score the maps while the next batch runs (default: the cores
            this process may use, :func:`~kdas_lite.metrics.default_workers`); the scores do
            not depend on it.
        cache: decode each test set once and reuse it (the masks at full resolution and the
            images resized to ``size``, see :class:`~kdas_lite.data.PolypTestDataset`); the
            scores are the same without it. The cache files are named by the content of the
            test files and checked against their checksums on every run; an unreadable one is
            rebuilt and a cache folder that cannot be written is skipped, each with a warning
            (:mod:`kdas_lite.data.cache_files`).
        cache_dir: where the cache files go (default
            :func:`~kdas_lite.data.default_cache_dir`, never inside the data folder).

    Returns:
        An :class:`EvaluationTable` with the metrics of every test set, each set's status
        (complete / partial / inferred / synthetic, see :func:`~kdas_lite.data.set_status`),
        the parameter count and the measured images/s.

    Raises:
        DataError: a requested test set folder is missing, its files are unpaired or it holds
            more pairs than its benchmark (raised before the model runs), or a file is
            unreadable (the message names the file). An error during the run
            carries the test sets finished so far as ``exc.partial_table``.
    """
    folders = _resolve_sets(data_root_or_sets, test_sets)
    if head not in ("sum", "p1", "p2"):
        raise ValueError(f"head must be 'sum', 'p1' or 'p2', got {head!r}")
    if resize not in RESIZE_LABELS:
        raise ValueError(f"resize must be one of {sorted(RESIZE_LABELS)}, got {resize!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got "
                         f"{precision!r}")
    try:
        mean, std = model.input_mean, model.input_std
    except AttributeError as exc:
        raise TypeError("the model needs input_mean and input_std (the normalisation its "
                        "encoder expects), as kdas_lite's PolypPVT has") from exc
    device = torch.device(device if device is not None else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    # List every folder's files first: a missing or unpaired file fails before any compute.
    datasets = {n: PolypTestDataset(f, size=size, mean=mean, std=std) for n, f in folders.items()}
    # The cache holds OpenCV-resized images: with resize="pil" every image is decoded and
    # resized by PIL instead (no cache).
    cached = cache and resize == "opencv"
    where = (cache_dir if cache_dir is not None else default_cache_dir()) if cached else None
    workers = default_workers() if workers is None else workers
    if resize == "pil":
        for dataset in datasets.values():
            dataset.transform = _PILResize(size, mean, std)
    status = {n: set_status(n, f, datasets[n].pairs) for n, f in folders.items()}
    timer = _ForwardTimer(device)
    rows: dict[str, dict[str, float]] = {}
    n_images: dict[str, int] = {}
    image_dice: dict[str, dict[str, float]] = {}

    def table() -> EvaluationTable:
        return EvaluationTable(
            dict(rows), dict(n_images), model_name=name or type(model).__name__,
            params=sum(p.numel() for p in model.parameters()),
            images_per_s=timer.images_per_s(), size=size, device=device.type,
            status={n: status[n] for n in rows}, precision=precision, resize=resize,
            image_dice={n: dict(image_dice[n]) for n in rows},
        )

    was_training = model.training
    model.to(device).eval()
    try:
        for set_name, dataset in datasets.items():
            if where is not None:  # decoded once (built here, so an unreadable file keeps
                # the sets already scored in .partial_table)
                dataset = PolypTestDataset(folders[set_name], size=size, mean=mean, std=std,
                                           cache_dir=where, progress=progress)
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                num_workers=num_workers, collate_fn=collate_test,
                                pin_memory=device.type == "cuda")
            acc = MetricAccumulator(workers)
            stems: list[str] = []
            for batch in tqdm(loader, desc=set_name, disable=not progress, leave=False):
                images = batch["image"].to(device, non_blocking=True)
                with torch.inference_mode():
                    with torch.autocast(device_type=device.type, dtype=PRECISIONS[precision],
                                        enabled=PRECISIONS[precision] is not None):
                        logits = _logits(timer.run(model, images), head)
                    maps = soft_maps(logits, [m.shape for m in batch["mask"]], minmax=minmax)
                for pred, mask, stem in zip(maps, batch["mask"], batch["name"], strict=True):
                    acc.submit(pred, mask, label=f"{set_name}/{stem}")
                    stems.append(stem)
            result = acc.result(per_image=True)
            image_dice[set_name] = {stem: image["meanDic"] for stem, image
                                    in zip(stems, result.pop("per_image"), strict=True)}
            rows[set_name] = result
            n_images[set_name] = len(acc)
    except KDASError as exc:  # e.g. a corrupt image: keep the test sets already scored
        exc.partial_table = table()  # type: ignore[attr-defined]
        if rows and hasattr(exc, "add_note"):  # Python ≥ 3.11
            exc.add_note(f"the test sets finished before the error ({', '.join(rows)}) are in "
                         "this exception's .partial_table")
        raise
    finally:
        model.train(was_training)
    result = table()
    facts.record(model, _stated_scores(result, minmax, head), role=name)
    return result


def _stated_scores(table: EvaluationTable, minmax: bool, head: str) -> dict[str, float]:
    """The scores of ``table`` as facts of a course run (:mod:`kdas_lite.facts`), each named
    with what changes it: ``"test Kvasir meanDic (128 px, opencv)"``."""
    settings = [f"{table.size} px", str(table.resize)]
    settings += [] if minmax else ["no min-max"]
    settings += [] if table.precision == "float32" else [table.precision]
    settings += [] if head == "sum" else [f"head {head}"]
    return {f"test {d} {metric} ({', '.join(settings)})": value
            for d, row in table.rows.items() for metric, value in row.items()}
