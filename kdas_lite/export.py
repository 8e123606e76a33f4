"""Export a trained model to ONNX and check it against PyTorch with onnxruntime.

The exported graph takes ``image``: float32 ``(N, 3, H, W)`` normalised with the model's
``input_mean`` / ``input_std`` (the batch size N is dynamic, H and W are fixed at export time)
and returns the two logit maps ``p1`` and ``p2``, each ``(N, 1, H, W)``, exactly as
``model(image)`` does; the mask probability is ``sigmoid(p1 + p2)``.

Every file :func:`export_onnx` writes carries the metadata entry ``kdas_lite``
(:func:`is_kdas_export`); it replaces an existing file only when that file carries it too, and
only once the new export has been checked: a failed or refused export leaves the previous file
as it was.

Example:
    >>> from kdas_lite.export import export_onnx                      # doctest: +SKIP
    >>> export_onnx(student, "student.onnx", image_size=352)          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import os
import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kdas_lite.errors import KDASError

__all__ = ["ExportError", "check_export", "export_onnx", "is_kdas_export", "opset_range",
           "unfaithful_path", "verify_onnx"]

MARK = "kdas_lite"
"""Key of the ONNX metadata entry that every file :func:`export_onnx` writes carries."""

_OLDEST_OPSET = 7  # the oldest opset onnxruntime runs


class ExportError(KDASError):
    """ONNX export or its check failed, or the packages it needs are missing."""


class _Logits(nn.Module):
    """Make the model's forward return exactly the tuple ``(P1, P2)`` of logits.

    Wraps a CPU float32 copy in eval mode, so the caller's model (maybe on a GPU, maybe in
    training mode) is left untouched.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = copy.deepcopy(model).cpu().float().eval()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p1, p2 = self.model(image)[:2]
        return p1, p2


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    image_size: int = 352,
    *,
    opset: int = 18,
    verify: bool = True,
    atol: float = 1e-3,
) -> Path:
    """Write ``model`` as an ONNX file and (by default) check it with onnxruntime.

    Uses the ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``,
    PyTorch's default since 2.9; it needs ``onnxscript``). The legacy TorchScript exporter is
    not an option for Polyp-PVT: it cannot export the SAM's adaptive pooling once PVTv2's
    attention reshapes make the shapes symbolic. The batch axis is dynamic; the example input
    has batch 2 because ``torch.export`` would specialise a batch of 1 to a constant.

    Args:
        model: a segmentation model returning ``(P1, P2)`` logits (e.g. the student); it is
            copied to the CPU in eval mode, the original is not touched.
        path: destination ``.onnx`` file (its folder is created).
        image_size: side of the square input, a multiple of 32.
        opset: ONNX opset version, in :func:`opset_range` (18 is the exporter's native one).
        verify: run :func:`verify_onnx` and raise if the outputs differ by more than
            ``atol``; the unfaithful file is then kept only as :func:`unfaithful_path`, and a
            previous file at ``path`` is left as it was.
        atol: tolerance of the check on logits (float32 kernels differ slightly), finite
            and > 0.

    Returns:
        The path of the ONNX file.

    Raises:
        ExportError: bad ``opset`` / ``atol``, ``path`` is a file that export did not write
            (:func:`check_export`), onnxscript or (with ``verify``) onnxruntime is missing,
            the export failed, or the ONNX outputs do not match PyTorch.
    """
    if image_size < 32 or image_size % 32:
        raise ExportError(f"image_size must be a positive multiple of 32, got {image_size}")
    check_export(path, opset, atol)
    try:
        import onnx
        import onnxscript  # noqa: F401  (needed by the exporter; fail early and clearly)
    except ImportError as exc:
        raise ExportError("ONNX export needs onnxscript and onnx: pip install onnxscript onnx"
                          ) from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed only once checked: a failed export never
    # replaces a previous good file, and never leaves a file that looks like a good one.
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}")
    module = _Logits(model)
    example = torch.randn(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    try:
        # The exporter is chatty (progress lines, logged conversion tracebacks, deprecation
        # notes); failures still raise.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                _quiet("torch.onnx", "onnxscript"):
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(module, (example,), str(tmp), dynamo=True,
                                  dynamic_shapes=({0: torch.export.Dim("batch")},),
                                  input_names=["image"], output_names=["p1", "p2"],
                                  opset_version=opset, external_data=False)  # one .onnx file
            except Exception as exc:  # the exporter raises many types; report them all the same
                first_line = (str(exc) or type(exc).__name__).splitlines()[0]
                raise ExportError(f"ONNX export of {type(model).__name__} to {path} failed: "
                                  f"{type(exc).__name__}: {first_line}") from exc
        proto = onnx.load(str(tmp))
        written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                       None)
        if written != opset:  # the exporter falls back to its own opset when conversion fails
            raise ExportError(f"the exporter could not convert {type(model).__name__} to opset "
                              f"{opset} (it wrote opset {written}); try --opset 18, its native "
                              f"one. Nothing was written to {path}")
        proto.metadata_props.add(key=MARK, value=f"written by kdas-lite export from "
                                                 f"{type(model).__name__}, {image_size} px")
        onnx.save(proto, str(tmp))
        if verify:
            diff = _max_diff(module, tmp, image_size, shown_as=path)
            if diff > atol:
                _set_aside(tmp, path, diff, atol)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def opset_range() -> tuple[int, int]:
    """The ONNX opsets :func:`export_onnx` can write: from 7 (the oldest onnxruntime runs) to
    the newest the installed ``onnx`` package knows (opsets other than the exporter's own, 18,
    are converted; a failed conversion is an error, never a silent opset 18).

    Raises:
        ExportError: the ``onnx`` package is not installed.
    """
    try:
        import onnx
    except ImportError as exc:
        raise ExportError("ONNX export needs onnxscript and onnx: pip install onnxscript onnx"
                          ) from exc
    return _OLDEST_OPSET, int(onnx.defs.onnx_opset_version())


def is_kdas_export(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is an ONNX file that :func:`export_onnx` wrote (it carries the
    metadata entry :data:`MARK`): the only kind of file an export may replace."""
    path = Path(path)
    if path.is_symlink() or not path.is_file() or path.stat().st_size >= 2**31:
        return False
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf decode errors, and anything else: not one of ours
        return False
    return any(entry.key == MARK for entry in model.metadata_props)


def check_export(path: str | os.PathLike[str], opset: int, atol: float) -> None:
    """The checks :func:`export_onnx` makes before doing anything (``kdas-lite export`` makes
    them before loading the checkpoint).

    Raises:
        ExportError: ``opset`` outside :func:`opset_range`, ``atol`` not a finite number > 0,
            or ``path`` exists and is not a file written by :func:`export_onnx` (it is never
            replaced).
    """
    low, high = opset_range()
    if isinstance(opset, bool) or not isinstance(opset, int) or not low <= opset <= high:
        raise ExportError(f"--opset {opset}: the installed exporter writes ONNX opsets {low} to "
                          f"{high} (18 is its native one)")
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not (
            math.isfinite(atol) and atol > 0):
        raise ExportError(f"--atol {atol}: the tolerance of the onnxruntime check must be a "
                          "finite number > 0 (default 1e-3)")
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not is_kdas_export(path):
        raise ExportError(f"{path} exists and was not written by kdas-lite export, so it is "
                          "never replaced; choose another output file or move it away first")


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence the loggers ``names`` for the ``with`` block."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def unfaithful_path(path: str | os.PathLike[str]) -> Path:
    """Where an export that failed its check is kept: ``student.onnx`` →
    ``student.unfaithful.onnx``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.unfaithful{path.suffix}")


def _set_aside(current: Path, path: Path, diff: float, atol: float) -> None:
    """Rename an unfaithful export of ``path`` (now at ``current``) to
    :func:`unfaithful_path` and raise: nobody should deploy it by mistake."""
    kept = unfaithful_path(path)
    if (kept.exists() or kept.is_symlink()) and not is_kdas_export(kept):
        current.unlink()
        raise ExportError(f"{path}: ONNX outputs differ from PyTorch by {diff:.2e} (> {atol:g}); "
                          f"the export is not faithful and was deleted ({kept} exists and was "
                          "not written by kdas-lite export). Try another --opset or report "
                          "the model.")
    os.replace(current, kept)
    raise ExportError(f"{path}: ONNX outputs differ from PyTorch by {diff:.2e} (> {atol:g}); "
                      f"the export is not faithful, so it was renamed to {kept} (kept only for "
                      "inspection). Try another --opset or report the model.")


def verify_onnx(model: nn.Module, path: str | os.PathLike[str], image_size: int, *,
                atol: float | None = None, batch_size: int = 3, seed: int = 0) -> float:
    """Run the ONNX file with onnxruntime and PyTorch on the same random batch.

    The default batch size (3) differs from the export's example (2) so that the dynamic
    batch axis is exercised too; a file with a fixed batch size gets that size.

    Args:
        atol: if given, raise when the difference exceeds it, after renaming the file to
            :func:`unfaithful_path` so that it cannot be mistaken for a good export of
            ``model``.

    Returns:
        The maximum absolute difference over both logit maps.

    Raises:
        ExportError: onnxruntime is not installed, the file cannot be run, or the outputs
            differ by more than ``atol``.
    """
    path = Path(path)
    diff = _max_diff(_Logits(model), path, image_size, batch_size, seed)
    if atol is not None and diff > atol:
        _set_aside(path, path, diff, atol)
    return diff


def _max_diff(module: _Logits, path: Path, image_size: int, batch_size: int = 3, seed: int = 0,
              *, shown_as: Path | None = None) -> float:
    """Largest ``|ONNX - PyTorch|`` over both logit maps of a random batch; errors name
    ``shown_as`` (default ``path``)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ExportError("checking the ONNX export needs onnxruntime: pip install onnxruntime "
                          "(or pass verify=False / --no-verify)") from exc
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        fixed = session.get_inputs()[0].shape[0]
        batch_size = fixed if isinstance(fixed, int) else batch_size
        x = torch.randn(batch_size, 3, image_size, image_size,
                        generator=torch.Generator().manual_seed(seed))
        onnx_out = session.run(["p1", "p2"], {"image": x.numpy()})
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ExportError(f"onnxruntime cannot run {shown_as or path}: {exc}") from exc
    with torch.no_grad():
        torch_out = module(x)
    return max(float(np.abs(o - t.numpy()).max()) for o, t in zip(onnx_out, torch_out,
                                                                  strict=True))
