"""Per image and per dataset: every measure of one map, and the protocol's dataset averages.

:func:`score_map` scores one image with all eleven measures (the thresholded curves of
:mod:`~kdas_lite.metrics.thresholded`, Sm of :mod:`~kdas_lite.metrics.structure`, wFm of
:mod:`~kdas_lite.metrics.weighted_f`, and MAE). :class:`MetricAccumulator` streams images
(in worker threads if asked) and averages them as PraNet's ``eval/main.m`` does: the curves are
averaged over the images before their mean and max are taken; :func:`evaluate_maps` scores a
list of maps with it.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from kdas_lite.metrics._common import CURVE_NAMES, _check_pair, _sum
from kdas_lite.metrics.structure import _matlab_centroid, _Moments, _s_measure
from kdas_lite.metrics.thresholded import _curves
from kdas_lite.metrics.weighted_f import _weighted_f_measure


def _score(p: np.ndarray, g: np.ndarray) -> dict[str, Any]:
    curves = _curves(p, g)
    dic, iou, sen, spe, em = curves
    n_fg = np.count_nonzero(g)
    if 0 < n_fg < g.size:
        cells = _Moments(p, g, *_matlab_centroid(g, n_fg))
        # MAE = (Σ_{¬G} S + Σ_G (1 − S)) / N, from the cells the S-measure needs anyway.
        mae = float(np.dot(cells.n[:, 0], cells.mean[:, 0])
                    + np.dot(cells.n[:, 1], 1 - cells.mean[:, 1])) / g.size
    else:
        cells, mean = None, _sum(p) / p.size
        mae = mean if n_fg == 0 else 1 - mean
    return {
        "meanDic": float(dic.mean()), "meanIoU": float(iou.mean()),
        "maxDic": float(dic.max()), "maxIoU": float(iou.max()),
        "wFm": _weighted_f_measure(p, g), "Sm": _s_measure(p, g, cells=cells),
        "meanEm": float(em.mean()), "maxEm": float(em.max()),
        "MAE": mae,
        "meanSen": float(sen.mean()), "meanSpe": float(spe.mean()),
        "curves": dict(zip(CURVE_NAMES, curves, strict=True)),
    }


def score_map(pred: Any, gt: Any) -> dict[str, Any]:
    """Every protocol measure for one image.

    Args:
        pred: ``(H, W)`` soft map in [0, 1] (numpy array or tensor; leading 1-dims allowed).
        gt: ``(H, W)`` boolean (or 0/1) mask of the same size.

    Returns:
        The keys of :data:`METRIC_NAMES` (floats; ``meanX``/``maxX`` are the mean/max of this
        image's own curve) and ``"curves"``: ``{name: array (256,)}`` for :data:`CURVE_NAMES`.
    """
    return _score(*_check_pair(pred, gt, keep_float32=True))


def default_workers() -> int:
    """The CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class MetricAccumulator:
    """Scores images one at a time and averages them as the protocol does.

    Only the five 256-point curves and three scalars are kept per image, so a whole test set
    never has to sit in memory (``kdas_lite.evaluate`` streams predictions through it).

    With ``workers > 1`` :meth:`submit` scores in that many threads (NumPy and OpenCV release
    the GIL in the per-pixel work) while the caller goes on, e.g. with the next
    forward pass; at most ``2·workers`` pairs wait at a time, so memory stays bounded. The
    results do not depend on ``workers``: images are averaged in the order they were added.

    Example::

        acc = MetricAccumulator()
        for pred, gt in pairs:
            acc.add(pred, gt)
        acc.result()["meanDic"]
    """

    def __init__(self, workers: int = 1) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers
        self._images: list[dict[str, Any] | Future[dict[str, Any]]] = []
        self._pending: deque[Future[dict[str, Any]]] = deque()
        self._pool: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return len(self._images)

    def add(self, pred: Any, gt: Any, label: str = "") -> dict[str, Any]:
        """Score one pair now (see :func:`score_map`); ``label`` names it in error messages."""
        scores = _score(*_check_pair(pred, gt, label, keep_float32=True))
        self._images.append(scores)
        return scores

    def submit(self, pred: Any, gt: Any, label: str = "") -> None:
        """Queue one pair: checked now (errors name ``label``), scored in a worker thread
        (in this thread when ``workers == 1``); :meth:`result` waits for all of them."""
        p, g = _check_pair(pred, gt, label, keep_float32=True)
        if self.workers == 1:
            self._images.append(_score(p, g))
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="kdas-metrics")
        while len(self._pending) >= 2 * self.workers:
            self._pending.popleft().result()
        future = self._pool.submit(_score, p, g)
        self._pending.append(future)
        self._images.append(future)

    def close(self) -> None:
        """Drop the queued pairs not yet scored and end the worker threads (after an error)."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
        self._images = [im for im in self._images if isinstance(im, dict) or
                        (im.done() and not im.cancelled() and im.exception() is None)]
        self._pending.clear()

    def _collect(self) -> list[dict[str, Any]]:
        """Every image's scores, waiting for the queued ones; the worker threads end here."""
        self._images = [im if isinstance(im, dict) else im.result() for im in self._images]
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        return self._images  # type: ignore[return-value]

    def result(self, per_image: bool = False) -> dict[str, Any]:
        """Dataset means, keys exactly :data:`METRIC_NAMES` (+ ``"per_image"`` if asked).

        ``meanX``/``maxX`` are the mean/max over thresholds of the image-averaged curve;
        wFm, Sm and MAE are plain means over images.
        """
        images = self._collect()
        if not images:
            raise ValueError("no maps to score: add at least one (prediction, mask) pair")
        curves = np.mean([[im["curves"][c] for c in CURVE_NAMES] for im in images], axis=0)
        dic, iou, sen, spe, em = curves
        scalar = {k: float(np.mean([im[k] for im in images])) for k in ("wFm", "Sm", "MAE")}
        out: dict[str, Any] = {
            "meanDic": float(dic.mean()), "meanIoU": float(iou.mean()),
            "maxDic": float(dic.max()), "maxIoU": float(iou.max()),
            "wFm": scalar["wFm"], "Sm": scalar["Sm"],
            "meanEm": float(em.mean()), "maxEm": float(em.max()),
            "MAE": scalar["MAE"], "meanSen": float(sen.mean()), "meanSpe": float(spe.mean()),
        }
        if per_image:
            out["per_image"] = list(images)
        return out


def evaluate_maps(preds: Sequence[Any], gts: Sequence[Any],
                  per_image: bool = False, workers: int | None = None) -> dict[str, Any]:
    """Score a dataset of soft maps against their masks with the polyp protocol.

    Args:
        preds: soft maps in [0, 1], numpy arrays or tensors ``(H_i, W_i)`` (sizes may differ
            between images).
        gts: boolean (or 0/1) masks, ``gts[i]`` the same size as ``preds[i]``.
        per_image: also return ``"per_image"``: one dict per image as :func:`score_map` gives
            (the eleven measures of that image alone plus its ``"curves"``).
        workers: threads that score images (default :func:`default_workers`); the result does
            not depend on it.

    Returns:
        ``{name: float}`` for the names of :data:`METRIC_NAMES`, in that order, plus
        ``"per_image"`` when asked. The dataset ``maxDic`` etc. are maxima of the averaged
        curves, *not* means of the per-image maxima.

    Raises:
        ValueError: the lists differ in length or are empty; a pair differs in size (the index
            is named); a prediction has values outside [0, 1]; a mask is not binary.
    """
    if len(preds) != len(gts):
        raise ValueError(f"got {len(preds)} predictions but {len(gts)} masks")
    acc = MetricAccumulator(default_workers() if workers is None else workers)
    try:
        for i, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
            acc.submit(pred, gt, label=f"preds[{i}] / gts[{i}]")
    except ValueError:
        acc.close()
        raise
    return acc.result(per_image=per_image)
