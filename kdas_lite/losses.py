"""The KDAS losses, one function per term of the paper.

Notation (shapes are PyTorch's ``(batch, channels, height, width)``):

- ``P`` ∈ ℝ^{B×1×H×W}: a model's output **logits** (P1 from the CFM branch, P2 from SAM).
- ``G`` ∈ {0,1}^{B×1×H×W}: the ground-truth mask.
- ``T``: the distillation temperature (2 in the paper), ``α``: the distillation weight (0.3).

The total objective (paper, Eq. 6) is

    L_KDAS = (1 − α) · Σ_{P∈{P1,P2}} L_seg(P, G)
             + α · ( Σ_{P∈{P1,P2}} L_AT(P_s, P_t) + L_SGM(P1_s, P1_t) )

Three defects of the public reference code are *not* repeated here (see notebook 04):
its student softmax has no ``dim`` (a constant on a one-channel map, so L_AT gives the student
zero gradient), its "weighted" BCE uses ``reduce='none'`` (which means *mean*, so the weights do
nothing), and its SGM transpose fails at batch size 1. L_AT has three modes
(:data:`AT_MODES`): ``"kdas"``, kdas_lite's reading of Eq. 3, which differs from the public code
in more than the softmax ``dim`` (see :func:`attention_kd_loss`); ``"reference"``, the public
code as it is; and ``"reference-fixed"``, the public code with only the softmax ``dim``
repaired. ``"kdas"`` and ``"reference-fixed"`` are different methods (docs/RECIPES.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AtMode = Literal["kdas", "reference", "reference-fixed"]
AT_MODES: tuple[str, ...] = ("kdas", "reference", "reference-fixed")
"""The L_AT variants of :func:`attention_kd_loss` (``TrainConfig.at_mode``, ``--at-mode``)."""

__all__ = [
    "AT_MODES",
    "SGM_FORMS",
    "AtMode",
    "KDASLoss",
    "KDASLossOutput",
    "SgmForm",
    "attention_kd_loss",
    "attention_target",
    "boundary_weight",
    "cwd_loss",
    "pixel_kd_loss",
    "sgm_loss",
    "structure_loss",
    "symmetric_form",
]


def _check_map(name: str, x: Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} must have shape (B, 1, H, W), got {tuple(x.shape)}")


def _match_size(student: Tensor, teacher: Tensor) -> Tensor:
    """Resize the teacher map to the student's spatial size (bilinear) when they differ."""
    _check_map("student", student)
    _check_map("teacher", teacher)
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"student and teacher batch sizes differ: {student.shape[0]} vs {teacher.shape[0]}"
        )
    if teacher.shape[-2:] != student.shape[-2:]:
        teacher = F.interpolate(teacher, size=student.shape[-2:], mode="bilinear",
                                align_corners=False)
    return teacher


# ---------------------------------------------------------------------------------------------
# L_seg: structure loss (PraNet / Polyp-PVT, paper Eq. 1)
# ---------------------------------------------------------------------------------------------
def boundary_weight(mask: Tensor, kernel_size: int = 31) -> Tensor:
    """Pixel weights ``w = 1 + 5·|avgpool_k(G) − G|`` that emphasise pixels near the boundary.

    Args:
        mask: ``(B, 1, H, W)`` ground truth in ``{0, 1}`` (or in ``[0, 1]``: soft masks).
        kernel_size: odd window of the average pooling (31 in PraNet).

    Returns:
        ``(B, 1, H, W)`` weights in ``[1, 6]``.
    """
    pooled = F.avg_pool2d(mask, kernel_size=kernel_size, stride=1, padding=kernel_size // 2)
    return 1 + 5 * torch.abs(pooled - mask)


def structure_loss(pred: Tensor, mask: Tensor) -> Tensor:
    """Structure loss L_seg = L_wBCE + L_wIoU (paper Eq. 1, from PraNet).

    With ``w = boundary_weight(G)``, ``p = sigmoid(P)`` and sums over the pixels of each image:

        L_wBCE = Σ w · BCE(P, G) / Σ w
        L_wIoU = 1 − (Σ w·p·G + 1) / (Σ w·(p + G) − Σ w·p·G + 1)

    The BCE is computed per pixel (``reduction="none"``) so the weights really apply; the
    reference code's ``reduce='none'`` is a legacy flag that *averages* instead.

    Args:
        pred: ``(B, 1, H, W)`` logits.
        mask: ``(B, 1, H, W)`` ground truth in ``{0, 1}`` (or in ``[0, 1]``: soft masks).

    Returns:
        Scalar: the mean over the batch of ``L_wBCE + L_wIoU``.
    """
    _check_map("pred", pred)
    _check_map("mask", mask)
    if pred.shape != mask.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and mask {tuple(mask.shape)} differ in shape")
    pred = pred.float()
    mask = mask.float()
    weit = boundary_weight(mask)
    wbce = F.binary_cross_entropy_with_logits(pred, mask, reduction="none")
    wbce = (weit * wbce).sum(dim=(2, 3)) / weit.sum(dim=(2, 3))

    prob = torch.sigmoid(pred)
    inter = (prob * mask * weit).sum(dim=(2, 3))
    union = ((prob + mask) * weit).sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


# ---------------------------------------------------------------------------------------------
# L_AT: attention supervision (paper Eqs. 2-3)
# ---------------------------------------------------------------------------------------------
def attention_target(teacher: Tensor) -> Tensor:
    """Self-attention of the teacher's map with itself (paper Eq. 2).

    Each of the H rows of the map is a token whose W values are its features, so

        A_t = softmax(P_t P_tᵀ / √W) · P_t        (per image: H×H weights times H×W values)

    which is ``scaled_dot_product_attention(P_t, P_t, P_t)``. Rows that look alike (e.g. rows
    crossing the same polyp) borrow from each other: each row of ``A_t`` is a weighted average
    of rows of ``P_t``, so the target is never more extreme than the map — it smears a weak
    map along its rows and passes a confident one through (notebook 02, exercise 2).

    Args:
        teacher: ``(B, 1, H, W)`` teacher logits.

    Returns:
        ``(B, 1, H, W)`` attention-refined teacher logits.
    """
    _check_map("teacher", teacher)
    teacher = teacher.float()
    return F.scaled_dot_product_attention(teacher, teacher, teacher)


def _public_kl_mean(student_prob: Tensor, target: Tensor) -> Tensor:
    """``KLDivLoss(reduction="mean")(student_prob, target)`` as the public code calls it.

    PyTorch ≥ 2 computes ``xlogy(t, t) − t · x`` per element (``x`` is meant to be a
    log-probability, here it is a probability) and averages over *all* B·H·W elements. Where
    ``t < 0``, ``xlogy(t, t)`` is NaN, so the public value is NaN whenever the target has a
    negative entry (logit maps almost always do). That term does not depend on the student,
    so it is read as 0 there: the value is finite (training stops on a non-finite loss), and
    the student gradient, ``−t / (B·H·W)``, is exactly PyTorch's.
    """
    positive = target.clamp_min(0)
    return (torch.xlogy(positive, positive) - target * student_prob).mean()


def attention_kd_loss(
    student: Tensor,
    teacher: Tensor,
    temperature: float = 2.0,
    mode: AtMode = "kdas",
) -> Tensor:
    """Attention-supervision loss L_AT (paper Eq. 3), in one of three modes.

    With ``A_t = attention_target(P_t)`` (Eq. 2), N = H·W positions and B images:

    ``mode="kdas"`` (default): both maps become probability distributions over the H·W
    positions at temperature T, and the student is matched by KL divergence:

        q = softmax_{HW}(A_t / T),   p = softmax_{HW}(P_s / T)
        L_AT = T² · (1/B) Σ_b KL(q_b ‖ p_b)

    This is kdas_lite's reading of Eq. 3, **not** the public code with one bug fixed. It differs
    from the public code's L_AT in five ways: (1) the student softmax runs over the H·W
    positions, not the single channel; (2) the teacher target is softmaxed too (the public code
    uses the raw ``A_t / T``, which is not a distribution and has negative entries); (3) T
    divides the logits *before* the softmax (the public code divides the softmax output);
    (4) log-probabilities go into the KL (the public code passes probabilities where
    ``kl_div`` expects log-probabilities); (5) the KL is summed over positions and averaged
    over images (``batchmean``), where the public code averages over all B·H·W elements, so the
    value is about H·W times larger. Its student gradient is larger than
    ``"reference-fixed"``'s by a factor that grows like H·W and depends on the logits, and it
    points elsewhere: on random 44×44 maps with ``N(0, σ²)`` logits (B = 2, T = 2) the ratio
    spans about 400× to 25 000× and the cosine −0.5 to +0.4 as σ goes from 0.3 to 10
    (docs/RECIPES.md §3 gives the table and its conditions).

    ``mode="reference"``: the public code's computation as it is, for teaching:

        L_AT = T² · mean_{B·H·W}( xlogy(t, t) − t · softmax_{dim=1}(P_s) / T ),   t = A_t / T

    ``softmax`` without ``dim`` on a ``(B, 1, H, W)`` map runs over the single channel, so the
    student term is the constant 1/T and **the student gradient is exactly zero**. The public
    script needs PyTorch ≥ 2.0 (it calls ``scaled_dot_product_attention``), where ``kl_div``
    returns NaN for negative targets, so its L_AT *value* is NaN whenever ``A_t`` has a negative
    entry; here ``xlogy(t, t)`` is read as 0 there (see below), so the value is finite. The
    student gradient is zero either way.

    ``mode="reference-fixed"``: the public code with only the softmax ``dim`` repaired
    (``softmax_{HW}(P_s)`` instead of over the channel); everything else as the public code
    computes it (raw target ``A_t / T``, T after the softmax, probabilities into ``kl_div``,
    mean over all B·H·W elements):

        L_AT = T² · mean_{B·H·W}( xlogy(t, t) − t · softmax_{HW}(P_s) / T ),   t = A_t / T

    Its student gradient is ``−(T / (B·H·W)) · p ⊙ (t − ⟨p, t⟩)`` per image, with
    ``p = softmax_{HW}(P_s)``: it pushes mass towards positions where the *raw* attention
    target is above its p-weighted mean, and is tiny (each entry carries a 1/(B·H·W) and a p).

    In both public-code modes, ``xlogy(t, t)`` (which does not depend on the student) is taken
    as 0 where ``t < 0`` instead of PyTorch's NaN; the value then equals ``kl_div``'s wherever
    that is finite, and the student gradient always equals ``kl_div``'s.

    Args:
        student: ``(B, 1, H, W)`` student logits (receives the gradient).
        teacher: ``(B, 1, H', W')`` teacher logits; resized to ``(H, W)`` if different.
        temperature: T > 0.
        mode: one of :data:`AT_MODES`.

    Returns:
        Scalar loss.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if mode not in AT_MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, AT_MODES))}, got {mode!r}")
    teacher = _match_size(student, teacher)
    target = attention_target(teacher.detach())
    student = student.float()
    if mode == "kdas":
        log_p = F.log_softmax(student.flatten(1) / temperature, dim=1)
        log_q = F.log_softmax(target.flatten(1) / temperature, dim=1)
        kl = F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)
        return kl * temperature**2
    if mode == "reference":
        student_prob = torch.softmax(student, dim=1)  # over the one channel: the constant 1
    else:
        student_prob = torch.softmax(student.flatten(2), dim=-1).view_as(student)
    return _public_kl_mean(student_prob / temperature, target / temperature) * temperature**2


# ---------------------------------------------------------------------------------------------
# L_SGM: symmetrical guiding module (paper Eqs. 4-5)
# ---------------------------------------------------------------------------------------------
def symmetric_form(pred: Tensor) -> Tensor:
    """The symmetric "covariance-like" form S = P + Pᵀ of a map (paper Eq. 4).

    The transpose swaps the two spatial axes (``transpose(-1, -2)``), so S[i, j] = P[i, j] +
    P[j, i] pairs every pixel with its mirror across the diagonal; S is symmetric (S = Sᵀ) and
    keeps only the part of P that is invariant to swapping rows and columns.

    Non-square maps are first resized (bilinear) to a square of side ``max(H, W)`` so that the
    sum is defined; for square maps nothing is resized. Works for any batch size, including 1
    (the reference code's ``squeeze()`` broke there).

    Args:
        pred: ``(B, 1, H, W)`` logits.

    Returns:
        ``(B, 1, S, S)`` symmetric maps with ``S = max(H, W)``.
    """
    _check_map("pred", pred)
    h, w = pred.shape[-2:]
    if h != w:
        side = max(h, w)
        pred = F.interpolate(pred, size=(side, side), mode="bilinear", align_corners=False)
    return pred + pred.transpose(-1, -2)


SgmForm = Literal["logits", "prob", "no-transpose", "teacher-std"]
SGM_FORMS: tuple[str, ...] = ("logits", "prob", "no-transpose", "teacher-std")
"""The forms of :func:`sgm_loss` (``TrainConfig.sgm_form``): the paper's and three
interventions that each change one property of it (docs/RESULTS.md, the L_SGM mechanism)."""


def sgm_loss(student: Tensor, teacher: Tensor, pool_size: int | None = None,
             form: SgmForm = "logits") -> Tensor:
    """Symmetrical Guiding Module loss L_SGM (paper Eq. 5), or one intervention on it.

        L_SGM = MSE( pool(P_s + P_sᵀ), pool(P_t + P_tᵀ) )            form="logits" (the paper)

    ``pool`` is adaptive average pooling to ``pool_size × pool_size``; by default the teacher's
    side, as in the reference code (then it is the identity). A smaller ``pool_size`` compares
    coarser structure and is cheaper.

    The other forms change exactly one property and keep the rest (pooling, MSE, P1 only):

    - ``"prob"``: on probabilities, ``MSE(pool(σ(P_s) + σ(P_s)ᵀ), pool(σ(P_t) + σ(P_t)ᵀ))``;
      the target is bounded in [0, 2] instead of the teacher's unbounded logits.
    - ``"no-transpose"``: ``P + P`` in place of ``P + Pᵀ``, i.e. ``4·MSE(pool(P_s),
      pool(P_t))``: plain pooled logit matching at the paper form's scale, without the mirror
      pairing of pixel (i, j) with (j, i).
    - ``"teacher-std"``: both maps divided by the teacher's per-image standard deviation σ_t
      (over its H·W logits, detached) before the symmetric form; the loss is then the mean
      over images of each image's paper-form MSE divided by σ_t²: images whose teacher logits
      spread widely weigh less, and the target is on a unit scale.

    Args:
        student: ``(B, 1, H, W)`` student logits.
        teacher: ``(B, 1, H', W')`` teacher logits; resized to ``(H, W)`` if different.
        pool_size: side of the pooled maps, or None for the full symmetric map.
        form: one of :data:`SGM_FORMS`.

    Returns:
        Scalar loss.
    """
    if form not in SGM_FORMS:
        raise ValueError(f"form must be one of {', '.join(map(repr, SGM_FORMS))}, got {form!r}")
    teacher = _match_size(student, teacher).detach().float()
    student = student.float()
    if form == "prob":
        student, teacher = torch.sigmoid(student), torch.sigmoid(teacher)
    elif form == "teacher-std":
        scale = teacher.flatten(1).std(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
        student, teacher = student / scale, teacher / scale
    if form == "no-transpose":
        _check_map("pred", student)
        s_sym, t_sym = student + student, teacher + teacher
    else:
        s_sym, t_sym = symmetric_form(student), symmetric_form(teacher)
    side = pool_size or t_sym.shape[-1]
    return F.mse_loss(F.adaptive_avg_pool2d(s_sym, side), F.adaptive_avg_pool2d(t_sym, side))


# ---------------------------------------------------------------------------------------------
# Baselines a course compares against
# ---------------------------------------------------------------------------------------------
def pixel_kd_loss(student: Tensor, teacher: Tensor, temperature: float = 2.0) -> Tensor:
    """Pixel-wise logit distillation (Hinton et al. 2015) for a binary map.

    Each pixel is a two-class problem with probabilities ``σ(P/T)``; the loss is the mean over
    pixels of ``KL(Bern(σ(P_t/T)) ‖ Bern(σ(P_s/T)))``, times T².

    Args:
        student: ``(B, 1, H, W)`` student logits.
        teacher: ``(B, 1, H', W')`` teacher logits; resized to ``(H, W)`` if different.
        temperature: T > 0.

    Returns:
        Scalar loss.
    """
    teacher = _match_size(student, teacher).detach().float()
    s = student.float() / temperature
    t = teacher / temperature
    q = torch.sigmoid(t)
    # KL(q‖p) = q(log q − log p) + (1−q)(log(1−q) − log(1−p)), written with logsigmoid.
    kl = q * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - q) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    return kl.mean() * temperature**2


def cwd_loss(student: Tensor, teacher: Tensor, temperature: float = 2.0) -> Tensor:
    """Channel-wise (spatial-distribution) distillation, CWD (Shu et al., ICCV 2021).

    Each channel of the map is turned into a distribution over the H·W positions,
    ``softmax_{HW}(P/T)``, and the student is matched to the teacher by
    ``T² · KL(q ‖ p)`` averaged over batch and channels. Unlike L_AT there is no
    self-attention target: the teacher's raw map is the target.

    Args:
        student: ``(B, C, H, W)`` student logits.
        teacher: ``(B, C, H', W')`` teacher logits; resized to ``(H, W)`` if different.
        temperature: T > 0.

    Returns:
        Scalar loss.
    """
    if teacher.shape[-2:] != student.shape[-2:]:
        teacher = F.interpolate(teacher, size=student.shape[-2:], mode="bilinear",
                                align_corners=False)
    if student.shape[:2] != teacher.shape[:2]:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} "
                         "differ in batch or channels")
    b, c = student.shape[:2]
    log_p = F.log_softmax(student.float().reshape(b * c, -1) / temperature, dim=1)
    log_q = F.log_softmax(teacher.detach().float().reshape(b * c, -1) / temperature, dim=1)
    return F.kl_div(log_p, log_q, reduction="batchmean", log_target=True) * temperature**2


# ---------------------------------------------------------------------------------------------
# L_KDAS: the full objective (paper Eq. 6)
# ---------------------------------------------------------------------------------------------
@dataclass
class KDASLossOutput:
    """The total loss and each of its terms (detached terms are for logging).

    ``total`` carries the gradient; ``seg``, ``at``, ``sgm`` and ``kd`` are the unweighted sums
    over P1 and P2 of each term (0 when the term is switched off).
    """

    total: Tensor
    seg: Tensor
    at: Tensor
    sgm: Tensor
    kd: Tensor

    def as_dict(self) -> dict[str, float]:
        """Plain floats for logging: ``{"loss", "seg", "at", "sgm", "kd"}``."""
        return {
            "loss": float(self.total.detach()),
            "seg": float(self.seg.detach()),
            "at": float(self.at.detach()),
            "sgm": float(self.sgm.detach()),
            "kd": float(self.kd.detach()),
        }


class KDASLoss(nn.Module):
    """L_KDAS = (1 − α)·(L_seg(P1) + L_seg(P2)) + α·(L_AT(P1) + L_AT(P2) + L_SGM(P1) + L_KD).

    The terms can be switched off for ablations ("student alone" is ``use_at=False,
    use_sgm=False``), and a baseline KD loss (``baseline="pixel"`` or ``"cwd"``) can be added on
    P1 and P2 with the same weight α. With every distillation term off and no baseline the loss
    is plain supervised training, ``(1 − α)`` times the sum of structure losses, unless
    ``alpha`` is set to 0.

    The teacher's outputs must come from a forward pass without autograd
    (``torch.no_grad()``); this module detaches them again to be safe.

    Args:
        alpha: distillation weight α in [0, 1] (paper: 0.3).
        temperature: T (paper: 2).
        use_at: include L_AT on P1 and P2.
        use_sgm: include L_SGM on P1 (as in the reference code).
        at_mode: L_AT variant, one of :data:`AT_MODES` (see :func:`attention_kd_loss`):
            ``"kdas"`` (kdas_lite's), ``"reference"`` (the public code's, zero student
            gradient) or ``"reference-fixed"`` (the public code with the softmax ``dim``
            repaired).
        baseline: ``None``, ``"pixel"`` (Hinton) or ``"cwd"`` extra KD term.
        sgm_pool_size: forwarded to :func:`sgm_loss`.
        sgm_form: forwarded to :func:`sgm_loss` (``"logits"``: the paper's L_SGM).
        sgm_weight: an extra factor w on L_SGM, whose weight in Eq. 6 becomes ``α·w``
            (1: the paper); e.g. the factor that equalises its gradient with L_seg's
            (:func:`kdas_lite.gradients.equalizing_weight`).
    """

    def __init__(
        self,
        alpha: float = 0.3,
        temperature: float = 2.0,
        use_at: bool = True,
        use_sgm: bool = True,
        at_mode: AtMode = "kdas",
        baseline: Literal["pixel", "cwd"] | None = None,
        sgm_pool_size: int | None = None,
        sgm_form: SgmForm = "logits",
        sgm_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if at_mode not in AT_MODES:
            raise ValueError(f"at_mode must be one of {', '.join(map(repr, AT_MODES))}, "
                             f"got {at_mode!r}")
        if baseline not in (None, "pixel", "cwd"):
            raise ValueError(f"baseline must be None, 'pixel' or 'cwd', got {baseline!r}")
        self.alpha = alpha
        self.temperature = temperature
        self.use_at = use_at
        self.use_sgm = use_sgm
        self.at_mode = at_mode
        self.baseline = baseline
        self.sgm_pool_size = sgm_pool_size
        if sgm_form not in SGM_FORMS:
            raise ValueError(f"sgm_form must be one of {', '.join(map(repr, SGM_FORMS))}, "
                             f"got {sgm_form!r}")
        if not sgm_weight > 0:
            raise ValueError(f"sgm_weight must be > 0, got {sgm_weight}")
        self.sgm_form = sgm_form
        self.sgm_weight = sgm_weight

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, temperature={self.temperature}, use_at={self.use_at}, "
                f"use_sgm={self.use_sgm}, at_mode={self.at_mode!r}, baseline={self.baseline!r}, "
                f"sgm_form={self.sgm_form!r}, sgm_weight={self.sgm_weight}")

    def terms(
        self,
        student: tuple[Tensor, Tensor],
        teacher: tuple[Tensor, Tensor] | None,
        mask: Tensor | None,
    ) -> dict[str, Tensor]:
        """The unweighted terms of Eq. 6 that are switched on, each with its autograd graph.

        ``{"seg": ΣL_seg, "at": ΣL_AT, "sgm": L_SGM, "kd": ΣL_KD}`` ("seg" whenever a mask
        is given; the sums run over P1 and P2, L_SGM is on P1). :meth:`weights` gives their
        factors in Eq. 6.

        Args:
            student: ``(P1_s, P2_s)``, each ``(B, 1, H, W)`` logits.
            teacher: ``(P1_t, P2_t)`` logits, or None when every distillation term is off.
            mask: ``(B, 1, H, W)`` ground truth, or None for the distillation terms alone
                (images without labels: :mod:`kdas_lite.transfer`).
        """
        s1, s2 = student
        terms = {} if mask is None else {"seg": structure_loss(s1, mask)
                                         + structure_loss(s2, mask)}
        if not (self.use_at or self.use_sgm or self.baseline is not None):
            return terms
        if teacher is None:
            raise ValueError("teacher outputs are required when a distillation term is on")
        t1, t2 = (t.detach() for t in teacher)
        if self.use_at:
            terms["at"] = (attention_kd_loss(s1, t1, self.temperature, self.at_mode)
                           + attention_kd_loss(s2, t2, self.temperature, self.at_mode))
        if self.use_sgm:
            terms["sgm"] = sgm_loss(s1, t1, self.sgm_pool_size, self.sgm_form)
        if self.baseline == "pixel":
            terms["kd"] = (pixel_kd_loss(s1, t1, self.temperature)
                           + pixel_kd_loss(s2, t2, self.temperature))
        elif self.baseline == "cwd":
            terms["kd"] = cwd_loss(s1, t1, self.temperature) + cwd_loss(s2, t2, self.temperature)
        return terms

    def weights(self) -> dict[str, float]:
        """Each term's factor in Eq. 6: ``(1 − α)`` for "seg", ``α`` for the others (``α·w``
        for "sgm", with ``w = sgm_weight``)."""
        return {"seg": 1 - self.alpha, "at": self.alpha, "sgm": self.alpha * self.sgm_weight,
                "kd": self.alpha}

    def forward(
        self,
        student: tuple[Tensor, Tensor],
        teacher: tuple[Tensor, Tensor] | None,
        mask: Tensor | None,
    ) -> KDASLossOutput:
        """Compute L_KDAS.

        Args:
            student: ``(P1_s, P2_s)``, each ``(B, 1, H, W)`` logits.
            teacher: ``(P1_t, P2_t)`` logits, or None when every distillation term is off.
            mask: ``(B, 1, H, W)`` ground truth, or None: the distillation terms alone,
                ``α·(ΣL_AT + w·L_SGM + ΣL_KD)`` (``seg`` is then 0).

        Returns:
            :class:`KDASLossOutput` with the total and each (unweighted) term.
        """
        if mask is None and not (self.use_at or self.use_sgm or self.baseline is not None):
            raise ValueError("without a mask the loss needs a distillation term")
        terms = self.terms(student, teacher, mask)
        zero = student[0].new_zeros(())
        seg, at, sgm, kd = (terms.get(k, zero) for k in ("seg", "at", "sgm", "kd"))
        total = (1 - self.alpha) * seg + self.alpha * (at + self.sgm_weight * sgm + kd)
        return KDASLossOutput(total=total, seg=seg.detach(), at=at.detach(), sgm=sgm.detach(),
                              kd=kd.detach())
