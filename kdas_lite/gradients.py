"""What each term of L_KDAS does to the student: the gradient of each summand, measured.

A loss term steers training through its gradient on the student's weights θ, not through its
value. For the summands of paper Eq. 6 (:meth:`kdas_lite.objectives.Objective.weighted_terms`),

    g_seg = ∇_θ (1 − α)·ΣL_seg,   g_at = ∇_θ α·ΣL_AT,   g_sgm = ∇_θ α·L_SGM,   g_kd = ∇_θ α·ΣL_KD,

:func:`term_gradients` reports each norm ‖g‖ and, for every distillation term, the cosine
``cos(g, g_seg) = ⟨g, g_seg⟩ / (‖g‖·‖g_seg‖)``. A ratio ``‖g_sgm‖ / ‖g_seg‖`` of 10 says L_SGM
moves the weights ten times harder than the segmentation loss; a cosine near 0 says it pushes
in a direction that does not help segmentation (near −1: against it). The training step sees
the sum of the g's, then clipping (``TrainConfig.clip``) and AdamW's per-weight scaling, so the
figures describe the push of each term, not the step itself.

``fit(..., probe_gradients=True)`` (and :func:`kdas_lite.train.distill`) measures them on a
fixed batch, the first validation batch, at the start of every epoch and adds them to the
history (``grad_seg``, ``grad_sgm``, ``cos_sgm``, …); notebook 04 plots them.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

__all__ = ["WeightedTerms", "equalizing_weight", "term_gradients"]


class WeightedTerms(Protocol):
    """What this module needs of a training objective: its weighted summands of paper Eq. 6
    (:meth:`kdas_lite.objectives.Objective.weighted_terms` has this shape; a protocol keeps the
    import arrow one way, train → gradients)."""

    def weighted_terms(self, model: nn.Module, images: Tensor, masks: Tensor
                       ) -> dict[str, Tensor]: ...


def term_gradients(model: nn.Module, objective: WeightedTerms, images: Tensor, masks: Tensor,
                   *, pairwise: bool = False) -> dict[str, float]:
    """Norm of each weighted loss term's gradient on ``model``, and its cosine with L_seg's.

    The model is put in eval mode for the measurement (batch-norm uses its running statistics
    and none of them change, so training is not disturbed) and its mode is restored; float32,
    no autocast. ``.grad`` of the parameters is left untouched.

    Args:
        model: the student (returns ``(P1, P2)`` logits).
        objective: its training objective (:class:`kdas_lite.objectives.Objective`).
        images: ``(B, 3, H, W)`` batch, normalised for ``model``.
        masks: ``(B, 1, H, W)`` ground truth.
        pairwise: also the cosine between every two distillation terms, ``cos_<a>_<b>``
            (e.g. ``cos_at_sgm``: 1 when the two push the weights the same way, so they have
            the same cosine with ``g_seg`` whatever their sizes).

    Returns:
        ``{"grad_<term>": ‖g_term‖}`` for every switched-on term ("seg" always) and
        ``{"cos_<term>": cos(g_term, g_seg)}`` for every term but "seg"; a cosine is 0 when a
        gradient is zero (e.g. the public code's L_AT).

    Example:
        >>> from kdas_lite.objectives import SupervisedObjective           # doctest: +SKIP
        >>> term_gradients(student, SupervisedObjective(), images, masks)  # doctest: +SKIP
        {'grad_seg': 1.93}
    """
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            terms = objective.weighted_terms(model, images, masks)
            flat = {}
            for i, (name, term) in enumerate(terms.items()):
                grads = torch.autograd.grad(term, params, retain_graph=i < len(terms) - 1,
                                            allow_unused=True)
                flat[name] = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                                        for g, p in zip(grads, params, strict=True)]).float()
    finally:
        model.train(was_training)
    result = {f"grad_{name}": float(g.norm()) for name, g in flat.items()}
    names = [name for name in flat if name != "seg"]
    pairs = [(name, "seg") for name in names]
    if pairwise:
        pairs += [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    for a, b in pairs:
        denominator = float(flat[a].norm() * flat[b].norm())
        key = f"cos_{a}" if b == "seg" else f"cos_{a}_{b}"
        result[key] = float(flat[a] @ flat[b]) / denominator if denominator > 0 else 0.0
    return result


def equalizing_weight(model: nn.Module, objective: WeightedTerms, images: Tensor, masks: Tensor,
                      term: str = "sgm") -> float:
    """The factor w on ``term`` that makes its weighted gradient as large as L_seg's here.

    With the norms of :func:`term_gradients` on this batch, ``w = ‖g_seg‖ / ‖g_term‖``: the
    term multiplied by w (for L_SGM, ``KDASLoss(sgm_weight=w)``, ``TrainConfig.sgm_weight``)
    has ``‖∇ w·α·term‖ = ‖∇ (1 − α)·ΣL_seg‖`` on this batch and this model. The weight
    already on the term in ``objective`` is part of ``g_term``, so the result is relative to it.

    Args:
        model, objective, images, masks: as :func:`term_gradients`.
        term: the summand to equalise ("sgm", "at" or "kd"; it must be switched on).

    Raises:
        ValueError: ``term`` is not a term of ``objective``, or its gradient is zero.
    """
    grads = term_gradients(model, objective, images, masks)
    if f"grad_{term}" not in grads:
        raise ValueError(f"term {term!r} is not switched on in this objective (its terms: "
                         f"{', '.join(k[5:] for k in grads if k.startswith('grad_'))})")
    if grads[f"grad_{term}"] == 0.0:
        raise ValueError(f"the gradient of {term!r} is zero: no weight can equalise it")
    return grads["grad_seg"] / grads[f"grad_{term}"]
