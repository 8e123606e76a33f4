"""Objectives: the loss of one batch for the model under training (paper Eqs. 1 and 6).

:func:`kdas_lite.train.fit` runs one loop for every model; what it minimises is an
:class:`Objective`:

- :class:`SupervisedObjective` (teacher, or "student alone"):
  ``L = L_seg(P1, G) + L_seg(P2, G)`` (paper Eq. 1, the Polyp-PVT loss);
- :class:`DistillationObjective` (student): the frozen teacher's ``(P1_t, P2_t)`` and
  :class:`~kdas_lite.losses.KDASLoss`, i.e.
  ``(1 − α)·ΣL_seg + α·(ΣL_AT + L_SGM [+ baseline KD])`` (paper Eq. 6);
- :func:`make_objective`: the one a :class:`~kdas_lite.config.TrainConfig` asks for.

Images are ``(B, 3, H, W)`` batches normalised for the student, masks ``(B, 1, H, W)`` in
[0, 1]; every model returns the logit maps ``(P1, P2)``, each ``(B, 1, H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from kdas_lite.config import TrainConfig
from kdas_lite.errors import TrainingError
from kdas_lite.losses import KDASLoss, KDASLossOutput

__all__ = ["DistillationObjective", "Objective", "SupervisedObjective", "make_objective"]


class Objective(nn.Module):
    """The loss of one batch for a model under training.

    ``forward(model, images, masks)`` is ``loss(student maps, teacher maps, masks)``, a
    :class:`KDASLossOutput`; subclasses implement :meth:`outputs`, which runs the models. Being
    modules, objectives move to the training device (with any teacher they hold) via ``.to()``.

    Attributes:
        teacher: the frozen teacher, or None when the objective needs none.
        teacher_file: the checkpoint the teacher was loaded from, if any (recorded in the run).
    """

    def __init__(self, loss: KDASLoss) -> None:
        super().__init__()
        self.loss = loss
        self.teacher: nn.Module | None = None
        self.teacher_file: Path | None = None

    def outputs(self, model: nn.Module, images: Tensor
                ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor] | None]:
        """``((P1_s, P2_s), (P1_t, P2_t) or None)``: the maps the loss compares."""
        raise NotImplementedError

    def forward(self, model: nn.Module, images: Tensor, masks: Tensor,
                transfer: tuple[Tensor, Tensor | None] | None = None) -> KDASLossOutput:
        """The loss of the batch; with ``transfer`` = ``(U images, U targets or None)``
        (:mod:`kdas_lite.transfer`) both batches go through the models in one pass and the
        loss is ``loss(L part) + loss(U part)``, each a mean over its own images: with
        targets (pseudo-labels or true masks) the U part is this objective against them,
        without (None) it is the distillation terms alone. The logged terms are the L
        part's; ``total`` includes the U part."""
        if transfer is None:
            return self.loss(*self.outputs(model, images), masks)
        u_images, u_masks = transfer
        n = len(images)
        student, teacher = self.outputs(model, torch.cat([images, u_images]))

        def part(maps: tuple[Tensor, Tensor] | None, labelled: bool
                 ) -> tuple[Tensor, Tensor] | None:
            return None if maps is None else tuple(  # type: ignore[return-value]
                m[:n] if labelled else m[n:] for m in maps)

        out = self.loss(part(student, True), part(teacher, True), masks)
        extra = self.loss(part(student, False), part(teacher, False), u_masks)
        return KDASLossOutput(total=out.total + extra.total, seg=out.seg, at=out.at,
                              sgm=out.sgm, kd=out.kd)

    def weighted_terms(self, model: nn.Module, images: Tensor, masks: Tensor
                       ) -> dict[str, Tensor]:
        """Each switched-on summand of the loss with its weight and autograd graph, e.g.
        ``{"seg": (1 − α)·ΣL_seg, "sgm": α·L_SGM}`` (:meth:`KDASLoss.terms`); they sum to
        the loss of :meth:`forward`."""
        weights = self.loss.weights()
        return {name: weights[name] * term
                for name, term in self.loss.terms(*self.outputs(model, images), masks).items()}


class SupervisedObjective(Objective):
    """``L = w·(L_seg(P1, G) + L_seg(P2, G))`` (paper Eq. 1 for w = 1): the teacher's and
    "student alone" loss. It is :class:`KDASLoss` with α = 1 − w and every distillation term
    off; ``seg_weight`` w = 1 − α is the control for the ``(1 − α)`` factor of Eq. 6."""

    def __init__(self, seg_weight: float = 1.0) -> None:
        super().__init__(KDASLoss(alpha=1.0 - seg_weight, use_at=False, use_sgm=False))

    def outputs(self, model: nn.Module, images: Tensor
                ) -> tuple[tuple[Tensor, Tensor], None]:
        return model(images)[:2], None


class DistillationObjective(Objective):
    """KDAS distillation (paper Eq. 6): a frozen teacher's logits supervise the student.

    The teacher is put in eval mode with ``requires_grad_(False)`` and runs under
    ``torch.no_grad()``. Not ``torch.inference_mode()``: tensors created there are "inference
    tensors", which autograd refuses to save for backward, and the KD losses combine teacher
    maps with student maps in operations that do save their inputs (e.g. the MSE of L_SGM),
    so the backward pass would fail.

    When teacher and student expect different input normalisations (e.g. an EfficientNet-Lite
    teacher, mean = std = 0.5, and a PVTv2 student, ImageNet statistics), the batch, normalised
    for the student, is converted for the teacher: ``x_t = (x·σ_s + μ_s − μ_t) / σ_t``.

    Args:
        teacher: the trained teacher (any module returning ``(P1, P2)`` logits).
        loss: the configured :class:`KDASLoss`.
        input_mean, input_std: the normalisation of the batches (the student's); None means
            the teacher's own (no conversion).
    """

    def __init__(self, teacher: nn.Module, loss: KDASLoss,
                 input_mean: Sequence[float] | None = None,
                 input_std: Sequence[float] | None = None) -> None:
        super().__init__(loss)
        self.teacher = teacher.eval().requires_grad_(False)
        for param in self.teacher.parameters():
            param.grad = None  # left over from the teacher's own training
        stats = [getattr(teacher, "input_mean", None), getattr(teacher, "input_std", None),
                 input_mean, input_std]
        scale = shift = None
        if None not in stats:
            t_mean, t_std, mean, std = (torch.tensor(v, dtype=torch.float32) for v in stats)
            if not (torch.equal(t_mean, mean) and torch.equal(t_std, std)):
                # x_t = x_s · scale + shift, per channel
                scale, shift = (std / t_std).view(1, 3, 1, 1), ((mean - t_mean) / t_std).view(
                    1, 3, 1, 1)
        # buffers (None when no conversion is needed) follow the objective to the device
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("shift", shift, persistent=False)

    def train(self, mode: bool = True) -> DistillationObjective:
        """Keep the teacher in eval mode whatever ``mode`` the objective is set to."""
        super().train(mode)
        self.teacher.eval()
        return self

    def outputs(self, model: nn.Module, images: Tensor
                ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        teacher_images = images if self.scale is None else images * self.scale + self.shift
        with torch.no_grad():
            teacher_out = self.teacher(teacher_images)[:2]
        return model(images)[:2], teacher_out


def make_objective(config: TrainConfig, teacher: nn.Module | None = None,
                   student: nn.Module | None = None) -> Objective:
    """The objective ``config`` asks for: :class:`SupervisedObjective` when no distillation
    term is on ("student alone"; with ``transfer_target="pseudo"`` it holds the frozen
    teacher, whose pseudo-labels of the transfer set it trains on), else
    :class:`DistillationObjective` with the configured :class:`KDASLoss` (the teacher's
    input is renormalised for ``student``'s statistics)."""
    if not config.distills:
        objective = SupervisedObjective(config.seg_weight)
        if config.transfer_target == "pseudo":  # the teacher only labels the transfer set
            if teacher is None:
                raise TrainingError("transfer_target='pseudo' needs the teacher whose hard "
                                    "pseudo-labels the student trains on")
            objective.teacher = teacher.eval().requires_grad_(False)
        return objective
    if teacher is None:
        raise TrainingError("distillation needs a teacher (a model or a checkpoint path); "
                            "switch off L_AT, L_SGM and the baseline to train the student alone")
    loss = KDASLoss(alpha=config.alpha, temperature=config.temperature, use_at=config.use_at,
                    use_sgm=config.use_sgm, at_mode=config.at_mode,  # type: ignore[arg-type]
                    baseline=config.baseline,  # type: ignore[arg-type]
                    sgm_pool_size=config.sgm_pool_size,
                    sgm_form=config.sgm_form,  # type: ignore[arg-type]
                    sgm_weight=config.sgm_weight)
    return DistillationObjective(teacher, loss, getattr(student, "input_mean", None),
                                 getattr(student, "input_std", None))
