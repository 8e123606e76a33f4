"""Training-time validation: the Dice of each image of a batch at one threshold, on the device.

Not the protocol's score (that is :func:`kdas_lite.metrics.evaluate_maps`, 256 thresholds, at
the mask's original size), but the quick per-epoch number that :mod:`kdas_lite.train` selects
checkpoints with; it follows the protocol's convention of 0 without a true positive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


def batch_dice(probs: Tensor, masks: Tensor, threshold: float = 0.5) -> Tensor:
    """Dice of each image of a batch at one threshold (the per-epoch validation score).

    ``Dice = 2·|M ∩ G| / (|M| + |G|)`` with ``M = [p ≥ threshold]`` and ``G = [mask > 0.5]``;
    0 when there is no true positive, as in the protocol (so empty vs empty scores 0).

    Args:
        probs: ``(B, 1, H, W)`` (or ``(B, H, W)``) probabilities, e.g. ``sigmoid(P1 + P2)``.
        masks: the masks, same shape, values in {0, 1}.
        threshold: binarisation threshold.

    Returns:
        ``(B,)`` float32 tensor on the device of ``probs``.
    """
    if probs.shape != masks.shape:
        raise ValueError(f"probs {tuple(probs.shape)} and masks {tuple(masks.shape)} differ")
    if probs.dim() < 3:
        raise ValueError(f"expected (B, 1, H, W) or (B, H, W), got {tuple(probs.shape)}")
    pred = probs >= threshold
    gt = masks > 0.5
    dims = tuple(range(1, probs.dim()))
    tp = (pred & gt).sum(dim=dims)
    total = pred.sum(dim=dims) + gt.sum(dim=dims)
    return (2 * tp / total.clamp_min(1)).float()
