"""Running the course on Google Colab: the device, Google Drive, and the two parameter sets.

What this module does for a notebook (its setup cell calls :func:`course_setup`):

1. **The device.** It reports what the notebook will run on: the GPU's name, compute
   capability, memory and the mixed-precision dtype training will use
   (:func:`kdas_lite.train.amp_dtype_for`: bf16 only where the GPU has it natively, capability
   ≥ 8.0; fp16 with a gradient scaler on a T4, 7.5). The notebooks' metadata ask Colab for a
   T4 (``"accelerator": "GPU"``, ``colab.gpuType = "T4"``); on Colab without a GPU it prints
   how to switch (*Runtime → Change runtime type → T4 GPU*) and continues on the CPU.
2. **Runs that persist.** Colab gives every notebook its own runtime, and a runtime's disk is
   wiped when it ends. With ``drive=True`` the run folder and the cache of downloaded archives
   live on Google Drive (``MyDrive/kdas_lite/``; one sign-in prompt per runtime), so 02, 03 and
   05 load the teacher of 01 and the students of 04, and nothing is downloaded twice. With
   ``drive=False`` everything stays in the runtime, and a warning says that the next notebook
   will not find it.
3. **The parameter set.** :data:`COURSE_SETS` names the sets of the course: ``"cpu-lab"`` (the
   values written in the notebooks' parameter cells: a 2-core CPU runs 01 → 05 within a
   90-minute lab, measured) and ``"colab-t4"`` (a Colab T4 GPU runs 01 → 05 within a 90-minute
   lab, estimated from measured FLOPs: ``benchmarks/colab_budget.py``, docs/bench/colab.md);
   notebooks/README.md gives both tables.
   ``scale=None`` takes ``"colab-t4"`` on a CUDA GPU and ``"cpu-lab"`` elsewhere.

Everything works off Colab too: there the run folder stays as given and nothing is mounted.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kdas_lite import facts
from kdas_lite.errors import KDASError
from kdas_lite.train import amp_dtype_for, resolve_device

__all__ = [
    "COURSE_SETS",
    "DRIVE_FOLDER",
    "NO_GPU_MESSAGE",
    "CourseSetup",
    "DeviceInfo",
    "check_test_sets",
    "course_setup",
    "device_info",
    "in_colab",
    "mount_drive",
    "warn_box",
]

DRIVE_FOLDER = "kdas_lite"
"""The folder in ``MyDrive`` that holds the course's runs and downloaded archives."""

_STUDENTS_T4 = {"image_size": 352, "batch_size": 16, "epochs": 12, "max_train_images": None,
                "max_val_images": 100, "encoders": "pvt", "pretrained": None}
_TEACHER_T4 = {"teacher_epochs": 30, "teacher_train_images": None}

COURSE_SETS: dict[str, dict[str, dict[str, Any]]] = {
    # the values of the notebooks' parameter cells (2-core CPU, 128 px, the offline pair where
    # the timm hub is unreachable): nothing is replaced
    "cpu-lab": {nb: {} for nb in ("01", "02", "03", "04", "05", "06")},
    # a Colab T4 (15 GB, fp16 + gradient scaler): the paper's PVTv2-b2 -> b0 pair with ImageNet
    # weights at the paper's 352 px and batch 16 (the paper's step fits: docs/bench/colab.md)
    # on all 1450 training images less the validation split; the teacher trains 30 epochs,
    # each student 12, notebook 04 its variants and seeds as on the CPU. Times:
    # notebooks/README.md (estimated from FLOPs until measured on a GPU).
    "colab-t4": {
        "01": {**{k: v for k, v in _STUDENTS_T4.items()
                  if k not in ("epochs", "max_train_images")}, **_TEACHER_T4},
        "02": dict(_STUDENTS_T4),
        "03": dict(_STUDENTS_T4),
        "04": {**_STUDENTS_T4, **_TEACHER_T4},
        "05": dict(_STUDENTS_T4),
        "06": dict(_STUDENTS_T4),  # notebook 04's student at its size; timed on the CPU
    },
}
"""Parameter set → notebook ("01" … "06") → the parameter values it replaces."""

NO_GPU_MESSAGE = (
    "This Colab runtime has no GPU. For the GPU parameters (the paper's models at 352 px): "
    "Runtime → Change runtime type → Hardware accelerator: T4 GPU → Save, then Runtime → Run "
    "all. Continuing on the CPU with the CPU-sized parameters (the cpu-lab set)."
)


def warn_box(title: str, text: str, *, width: int = 92) -> str:
    """Print ``text`` in a framed box headed ``⚠ title`` (visible in every notebook viewer,
    also in the rendered HTML copies) and return what was printed."""
    lines = [f"┌─ ⚠ {title} " + "─" * max(0, width - len(title) - 5)]
    for paragraph in text.split("\n"):
        wrapped = textwrap.wrap(paragraph, width - 2, break_long_words=False,
                                break_on_hyphens=False)  # paths and names stay whole
        lines += ["│ " + line for line in wrapped or [""]]
    lines.append("└" + "─" * (width - 1))
    box = "\n".join(lines)
    print(box, flush=True)
    return box


def in_colab() -> bool:
    """True inside a Google Colab runtime (its ``google.colab`` package can be imported)."""
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class DeviceInfo:
    """What a notebook runs on.

    Attributes:
        device: the torch device (``cuda`` or ``cpu``).
        name: the GPU's name, or ``"CPU"``.
        capability: the GPU's compute capability ``(major, minor)``; None on the CPU.
        memory_gib: the GPU's memory in GiB; None on the CPU.
        amp_dtype: the mixed-precision dtype of training (:func:`~kdas_lite.train.amp_dtype_for`).
    """

    device: torch.device
    name: str
    capability: tuple[int, int] | None = None
    memory_gib: float | None = None
    amp_dtype: torch.dtype | None = None

    def describe(self) -> str:
        """One line, e.g. ``device: cuda (Tesla T4, compute capability 7.5, 15.0 GiB);
        mixed precision: float16 + gradient scaler``."""
        if self.device.type != "cuda":
            return (f"device: {self.device} ({torch.get_num_threads()} torch threads); "
                    "training in float32")
        precision = {torch.bfloat16: "bfloat16 (native on this GPU)",
                     torch.float16: "float16 + gradient scaler (no native bfloat16 below "
                                    "compute capability 8.0)"}[self.amp_dtype]
        major, minor = self.capability or (0, 0)
        return (f"device: {self.device} ({self.name}, compute capability {major}.{minor}, "
                f"{self.memory_gib:.1f} GiB); mixed precision: {precision}")


def device_info(device: str | torch.device = "auto") -> DeviceInfo:
    """The :class:`DeviceInfo` of ``device`` (``"auto"``: CUDA when available, else CPU)."""
    resolved = resolve_device(device)
    if resolved.type != "cuda":
        return DeviceInfo(resolved, "CPU")
    props = torch.cuda.get_device_properties(resolved)
    return DeviceInfo(resolved, props.name, (props.major, props.minor),
                      props.total_memory / 2**30, amp_dtype_for(resolved))


def mount_drive(mountpoint: str | os.PathLike[str] = "/content/drive") -> Path:
    """Mount Google Drive in Colab (one sign-in prompt; a no-op when already mounted) and
    return ``<mountpoint>/MyDrive``.

    Raises:
        KDASError: not in Colab, or the mount failed / was declined.
    """
    try:
        from google.colab import drive
    except ImportError as exc:
        raise KDASError("Google Drive can only be mounted inside Colab") from exc
    try:
        drive.mount(str(mountpoint))
    except Exception as exc:  # declined sign-in, timeout: Colab raises plain exceptions
        raise KDASError(f"mounting Google Drive at {mountpoint} failed ({exc})") from exc
    return Path(mountpoint) / "MyDrive"


@dataclass(frozen=True)
class CourseSetup:
    """What :func:`course_setup` decided for one notebook.

    Attributes:
        notebook: ``"01"`` … ``"06"``.
        on_colab: running inside Google Colab.
        device: the :class:`DeviceInfo`.
        scale: the parameter set (a key of :data:`COURSE_SETS`).
        run_root: the shared run folder (on Google Drive on Colab with ``drive=True``).
        data_cache: where downloaded archives are kept between runtimes (Google Drive), or None.
        on_drive: True when ``run_root`` is on Google Drive.
        parameters: what the notebook's setup cell puts into its globals: ``run_root`` and
            the values of the chosen set for this notebook.
    """

    notebook: str
    on_colab: bool
    device: DeviceInfo
    scale: str
    run_root: Path
    data_cache: Path | None = None
    on_drive: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


def course_setup(notebook: str, *, run_root: str | os.PathLike[str] = "runs/notebooks",
                 drive: bool = True, device: str | torch.device = "auto",
                 scale: str | None = None, drive_folder: str = DRIVE_FOLDER,
                 mountpoint: str | os.PathLike[str] = "/content/drive") -> CourseSetup:
    """Report the device, put the runs on Google Drive (Colab) and choose the parameter set.

    Prints the course run's id when ``scripts/run_notebooks.py`` executes the notebook
    (:mod:`kdas_lite.facts`: the same on every page of one run), the device line (and on Colab
    without a GPU, :data:`NO_GPU_MESSAGE`), where the runs are kept, and every parameter the
    chosen set changes.

    Args:
        notebook: ``"01"`` … ``"06"`` (which entry of the set applies).
        run_root: the notebooks' shared run folder; on Colab with ``drive`` a relative one is
            placed under ``MyDrive/<drive_folder>/``.
        drive: on Colab, keep runs and downloads on Google Drive. Ignored elsewhere.
        device: the notebook's ``device`` parameter.
        scale: a key of :data:`COURSE_SETS`; None: ``"colab-t4"`` on a CUDA device, else
            ``"cpu-lab"``.
        drive_folder, mountpoint: where on Drive, and where Drive is mounted.

    Raises:
        KDASError: unknown ``notebook`` or ``scale``.
    """
    course_run = facts.begin(notebook)  # scripts/run_notebooks.py: the id all its pages show
    if course_run:
        print(f"run id: {course_run}")
    info = device_info(device)
    print(info.describe())
    colab = in_colab()
    if colab and info.device.type != "cuda":
        warn_box("no GPU", NO_GPU_MESSAGE)
    scale = scale or ("colab-t4" if info.device.type == "cuda" else "cpu-lab")
    if scale not in COURSE_SETS:
        raise KDASError(f"unknown parameter set scale={scale!r}; choose one of "
                        f"{', '.join(map(repr, COURSE_SETS))} or None")
    if notebook not in COURSE_SETS[scale]:
        raise KDASError(f"unknown notebook {notebook!r}; choose one of "
                        f"{', '.join(COURSE_SETS[scale])}")
    root, cache, on_drive = Path(run_root), None, False
    if colab and drive:
        try:
            base = mount_drive(mountpoint) / drive_folder
        except KDASError as exc:
            warn_box("runs stay in this runtime", f"{exc}. Runs and downloads are kept in this "
                     "runtime only: the next notebook will not find them. Run this cell again "
                     "to retry the sign-in.")
        else:
            root = root if root.is_absolute() else base / root
            cache, on_drive = base / "data-cache", True
            print(f"runs: {root} (Google Drive: kept for the next notebooks); downloaded "
                  f"archives: {cache}")
    elif colab:
        warn_box("drive = False", f"runs and downloads stay in this runtime ({root.resolve()}) "
                 "and are lost when it ends: the next notebook (its own runtime) will not find "
                 "them and will train quick stand-ins. Set drive = True to keep them on Google "
                 "Drive.")
    values = COURSE_SETS[scale][notebook]
    changes = ", ".join(f"{k} = {v!r}" for k, v in values.items()) or "the values above"
    print(f"parameters: the {scale} set ({changes})")
    return CourseSetup(notebook, colab, info, scale, root, cache, on_drive,
                       {"run_root": str(root), **values})


def check_test_sets(layout: Any) -> bool:
    """Say in a box when the five PraNet test sets are not all there (notebook 05).

    When Google Drive refused PraNet's TestDataset (its download quota), the course falls back
    to Kvasir-SEG, whose PraNet split has one test set, Kvasir: the cross-dataset columns are
    then missing and "the hardest unseen set" is a seen one.

    Args:
        layout: the notebook's :class:`~kdas_lite.data.DataLayout`.

    Returns:
        True when all five test sets are present (or the data is the synthetic stand-in).
    """
    from kdas_lite.data import TEST_SETS

    missing = [name for name in TEST_SETS if name not in layout.test]
    if not missing or layout.synthetic:
        return True
    have = ", ".join(layout.status[name].label for name in layout.test) or "none"
    warn_box("not the five test sets", f"Only these test sets are available: {have}. Missing: "
             f"{', '.join(missing)}. The cross-dataset tables below have only these columns, and "
             "a set seen in training stands in for the unseen ones. On Colab this happens when "
             "Google Drive refused PraNet's TestDataset (its download quota): run the data cell "
             "again later, in this runtime or a new one. Drive is then asked again and, when it "
             "answers, the five sets replace the Kvasir-SEG split (the zips are kept on Drive).")
    return False
