"""Known values, gradients and error paths of every KDAS loss term."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdas_lite.losses import (
    AT_MODES,
    KDASLoss,
    attention_kd_loss,
    attention_target,
    boundary_weight,
    cwd_loss,
    pixel_kd_loss,
    sgm_loss,
    structure_loss,
    symmetric_form,
)


def _maps(b: int = 2, h: int = 8, w: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, h, w, generator=g), torch.randn(b, 1, h, w, generator=g) * 3


def _square_mask(b: int = 2, size: int = 16) -> torch.Tensor:
    mask = torch.zeros(b, 1, size, size)
    q = size // 4
    mask[:, :, q:3 * q, q:3 * q] = 1
    return mask


# ------------------------------------------------------------------ structure loss (Eq. 1)
def test_structure_loss_known_value_on_empty_mask() -> None:
    # mask = 0 everywhere -> weights = 1; logits 0 -> p = 0.5:
    # wBCE = log 2; wIoU = 1 - (0 + 1) / (0.5·HW - 0 + 1) = 1 - 1/9 for a 4x4 map.
    pred = torch.zeros(1, 1, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    assert structure_loss(pred, mask).item() == pytest.approx(math.log(2) + 8 / 9, rel=1e-6)


def test_structure_loss_really_weights_the_bce() -> None:
    mask = _square_mask(1, size=64)
    weit = boundary_weight(mask)
    # Confidently right everywhere except on the boundary band, where it is wrong.
    pred = torch.where(weit > 2, 1 - 2 * mask, 2 * mask - 1) * 5
    assert weit[0, 0, 0, 0].item() == pytest.approx(1.0)  # far (> 15 px) from the boundary
    assert weit[0, 0, 16, 16].item() > 2.0  # on the square's corner: emphasised
    bce = F.binary_cross_entropy_with_logits(pred, mask, reduction="none")
    prob = torch.sigmoid(pred)
    inter = (prob * mask * weit).sum()
    union = ((prob + mask) * weit).sum()
    expected = (weit * bce).sum() / weit.sum() + 1 - (inter + 1) / (union - inter + 1)
    assert structure_loss(pred, mask).item() == pytest.approx(expected.item(), rel=1e-6)
    # The reference's reduce='none' turned the BCE into a plain mean, so the weights vanished:
    with pytest.warns(UserWarning):
        plain = F.binary_cross_entropy_with_logits(pred, mask, reduce="none")
    assert plain.dim() == 0
    assert ((weit * bce).sum() / weit.sum()).item() > 1.3 * plain.item()


def test_structure_loss_is_low_for_a_confident_correct_prediction() -> None:
    mask = _square_mask()
    good = structure_loss((mask * 2 - 1) * 20, mask).item()
    bad = structure_loss((1 - 2 * mask) * 20, mask).item()
    assert good < 0.01 < 1.0 < bad


def test_structure_loss_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        structure_loss(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="differ in shape"):
        structure_loss(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 4, 4))


# ------------------------------------------------------------------ L_AT (Eqs. 2-3)
def test_attention_target_is_scaled_dot_product_attention_over_rows() -> None:
    _, teacher = _maps(b=1, h=5, w=7)
    p = teacher[0, 0]
    weights = torch.softmax(p @ p.T / math.sqrt(p.shape[1]), dim=-1)  # (H, H)
    expected = weights @ p
    torch.testing.assert_close(attention_target(teacher)[0, 0], expected, rtol=1e-5, atol=1e-5)
    # A constant map attends uniformly and returns itself.
    const = torch.full((1, 1, 4, 4), 2.0)
    torch.testing.assert_close(attention_target(const), const)


def test_attention_kd_loss_known_value() -> None:
    # Constant student -> uniform p over N = 16 positions; teacher constant -> target uniform too.
    student = torch.zeros(1, 1, 4, 4)
    assert attention_kd_loss(student, torch.full((1, 1, 4, 4), 3.0)).item() == pytest.approx(
        0.0, abs=1e-6)
    # Teacher target with two values -> KL(q || uniform) = log N - H(q), times T².
    teacher = torch.zeros(1, 1, 4, 4)
    teacher[..., :2, :] = 4.0
    target = attention_target(teacher)
    q = torch.softmax(target.flatten() / 2.0, dim=0)
    expected = (math.log(16) + (q * q.log()).sum().item()) * 4.0
    assert attention_kd_loss(student, teacher, temperature=2.0).item() == pytest.approx(
        expected, rel=1e-5)


def test_attention_kd_loss_is_zero_when_student_matches_the_target() -> None:
    _, teacher = _maps()
    student = attention_target(teacher)
    assert attention_kd_loss(student, teacher).item() == pytest.approx(0.0, abs=1e-5)


def test_attention_kd_loss_gives_the_student_a_gradient() -> None:
    student, teacher = _maps()
    student.requires_grad_(True)
    attention_kd_loss(student, teacher).backward()
    assert student.grad is not None
    assert student.grad.abs().sum().item() > 1e-4


def test_reference_mode_gives_exactly_zero_student_gradient() -> None:
    student, teacher = _maps()
    student.requires_grad_(True)
    loss = attention_kd_loss(student, teacher, mode="reference")
    assert torch.isfinite(loss)
    loss.backward()
    assert student.grad is not None
    assert torch.count_nonzero(student.grad).item() == 0


def test_reference_mode_known_value() -> None:
    # Teacher constant 2 -> target 2, /T = 1; student softmax over 1 channel = 1, /T = 0.5:
    # pointwise 1·(log 1 − 0.5) = −0.5, mean −0.5, times T² = 4 -> −2.
    value = attention_kd_loss(torch.randn(2, 1, 4, 4), torch.full((2, 1, 4, 4), 2.0),
                              temperature=2.0, mode="reference")
    assert value.item() == pytest.approx(-2.0, rel=1e-6)


def _public_l_at(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                 fix_dim: bool) -> torch.Tensor:
    """The public train_kd_paper.py's L_AT, line for line (``fix_dim``: softmax over H·W)."""
    att = F.scaled_dot_product_attention(teacher, teacher, teacher) / temperature
    if fix_dim:
        prob = torch.softmax(student.flatten(2), dim=-1).view_as(student)
    else:
        prob = torch.softmax(student, dim=1)  # what softmax(P) without dim picks for 4-D input
    with warnings.catch_warnings():  # PyTorch warns that 'mean' is not 'batchmean': we know
        warnings.simplefilter("ignore", UserWarning)
        return F.kl_div(prob / temperature, att, reduction="mean") * temperature**2


def _numpy_reference_fixed(student: np.ndarray, teacher: np.ndarray, t: float) -> float:
    """reference-fixed L_AT of one (H, W) map, written out in numpy (t·log t := 0 for t ≤ 0)."""
    w = teacher.shape[1]
    scores = teacher @ teacher.T / math.sqrt(w)
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    target = (weights @ teacher) / t
    prob = np.exp(student - student.max())
    prob /= prob.sum()
    pos = np.clip(target, 0, None)
    xlogx = np.where(pos > 0, pos * np.log(np.where(pos > 0, pos, 1)), 0)
    return float((xlogx - target * prob / t).mean() * t**2)


def test_attention_modes_are_the_config_and_cli_choices() -> None:
    from kdas_lite import config
    from kdas_lite.cli import build_parser, config_from_args

    assert AT_MODES == config.AT_MODES == ("kdas", "reference", "reference-fixed")
    for mode in AT_MODES:
        args = build_parser().parse_args(["distill", "--preset", "smoke", "--at-mode", mode])
        assert config_from_args(args).at_mode == mode


def test_reference_fixed_known_value_by_hand() -> None:
    # Teacher constant 2 -> A_t = 2, t = A_t / T = 1 (t·log t = 0); student logits (0, 0, 0, ln 3)
    # -> p = (1/6, 1/6, 1/6, 1/2). Pointwise 0 − 1·p/T, mean over 4 = −(1/4)(1/2)·Σp = −1/8;
    # times T² = 4 -> −1/2 (and the public kl_div, finite here, agrees).
    student = torch.tensor([[[[0.0, 0.0], [0.0, math.log(3)]]]])
    teacher = torch.full((1, 1, 2, 2), 2.0)
    value = attention_kd_loss(student, teacher, temperature=2.0, mode="reference-fixed")
    assert value.item() == pytest.approx(-0.5, rel=1e-6)
    assert _public_l_at(student, teacher, 2.0, fix_dim=True).item() == pytest.approx(-0.5,
                                                                                    rel=1e-6)


@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (1, 1, 3, 5), (2, 1, 4, 3)])
def test_reference_fixed_value_matches_a_numpy_transcription(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    student, teacher = torch.randn(shape, generator=g), torch.randn(shape, generator=g) * 2
    assert (attention_target(teacher) < 0).any()  # a negative target entry is exercised
    expected = np.mean([_numpy_reference_fixed(s[0].double().numpy(), t[0].double().numpy(), 2.0)
                        for s, t in zip(student, teacher, strict=True)])
    value = attention_kd_loss(student, teacher, temperature=2.0, mode="reference-fixed")
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_reference_fixed_gradient_by_hand() -> None:
    # Uniform student (p = 1/4 on a 2×2 map, N = B·H·W = 4): dL/ds_j = −(T/N)·p_j·(t_j − Σ p t)
    # = −(A_j − mean A) / 16 with t = A / T, whatever T is.
    teacher = torch.tensor([[[[3.0, -1.0], [0.5, 2.0]]]])
    target = attention_target(teacher)
    for temperature in (1.0, 2.0, 4.0):
        student = torch.zeros(1, 1, 2, 2, requires_grad=True)
        attention_kd_loss(student, teacher, temperature, mode="reference-fixed").backward()
        assert student.grad is not None
        torch.testing.assert_close(student.grad, -(target - target.mean()) / 16)


@pytest.mark.parametrize("shape", [(1, 1, 6, 6), (2, 1, 5, 9)])
@pytest.mark.parametrize("mode", ["reference", "reference-fixed"])
def test_public_modes_have_the_public_codes_student_gradient(shape: tuple[int, ...],
                                                             mode: str) -> None:
    # The same gradient as kl_div on PyTorch ≥ 2, even where kl_div's value is NaN.
    g = torch.Generator().manual_seed(7)
    student, teacher = torch.randn(shape, generator=g), torch.randn(shape, generator=g) * 3
    ours = student.clone().requires_grad_(True)
    public = student.clone().requires_grad_(True)
    attention_kd_loss(ours, teacher, 2.0, mode=mode).backward()  # type: ignore[arg-type]
    _public_l_at(public, teacher, 2.0, fix_dim=mode == "reference-fixed").backward()
    assert ours.grad is not None and public.grad is not None
    assert torch.isfinite(ours.grad).all()
    torch.testing.assert_close(ours.grad, public.grad, rtol=1e-5, atol=1e-12)
    if mode == "reference":
        assert torch.count_nonzero(ours.grad).item() == 0
    else:
        assert ours.grad.abs().max().item() > 0


@pytest.mark.skipif(int(torch.__version__.split(".")[0]) < 2, reason="kl_div NaN is PyTorch ≥ 2")
def test_public_l_at_value_is_nan_on_torch_2_but_ours_is_finite() -> None:
    student, teacher = _maps()
    assert (attention_target(teacher) < 0).any()
    for fix_dim, mode in ((False, "reference"), (True, "reference-fixed")):
        assert torch.isnan(_public_l_at(student, teacher, 2.0, fix_dim=fix_dim))
        assert torch.isfinite(attention_kd_loss(student, teacher, mode=mode))  # type: ignore[arg-type]
    # Where the target has no negative entry, the values agree exactly.
    positive = teacher.abs()
    for fix_dim, mode in ((False, "reference"), (True, "reference-fixed")):
        public = _public_l_at(student, positive, 2.0, fix_dim=fix_dim).item()
        ours = attention_kd_loss(student, positive, mode=mode).item()  # type: ignore[arg-type]
        assert ours == pytest.approx(public, rel=1e-5)


def test_reference_fixed_and_kdas_are_different_methods() -> None:
    # On random N(0, 1) 44×44 maps the kdas gradient is about 2000× larger (the ratio grows like
    # H·W and depends on the logits' scale, docs/RECIPES.md §3) and points elsewhere; asserted
    # loosely.
    student, teacher = _maps(b=2, h=44, w=44, seed=0)
    grads = {}
    for mode in ("kdas", "reference-fixed"):
        s = student.clone().requires_grad_(True)
        attention_kd_loss(s, teacher, 2.0, mode=mode).backward()  # type: ignore[arg-type]
        assert s.grad is not None
        grads[mode] = s.grad.flatten()
    ratio = (grads["kdas"].norm() / grads["reference-fixed"].norm()).item()
    cosine = F.cosine_similarity(grads["kdas"], grads["reference-fixed"], dim=0).item()
    print(f"|grad kdas| / |grad reference-fixed| = {ratio:.0f}, cosine = {cosine:.2f}")
    assert 300 < ratio < 30000
    assert cosine < 0.8


@pytest.mark.parametrize("shape", [(1, 1, 8, 8), (1, 1, 6, 10), (3, 1, 7, 4)])
def test_reference_fixed_at_batch_one_and_non_square_never_reaches_the_teacher(
        shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(3)
    student = torch.randn(shape, generator=g, requires_grad=True)
    teacher = (torch.randn(shape, generator=g) * 3).requires_grad_(True)
    loss = attention_kd_loss(student, teacher, mode="reference-fixed")
    assert torch.isfinite(loss)
    loss.backward()
    assert teacher.grad is None
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert student.grad.abs().max().item() > 0


def test_kdas_loss_accepts_every_attention_mode() -> None:
    s1, t1 = _maps(seed=9)
    s2, t2 = _maps(seed=10)
    for mode in AT_MODES:
        out = KDASLoss(at_mode=mode, use_sgm=False)((s1, s2), (t1, t2), torch.zeros(2, 1, 8, 8))
        expected = (attention_kd_loss(s1, t1, mode=mode)  # type: ignore[arg-type]
                    + attention_kd_loss(s2, t2, mode=mode))  # type: ignore[arg-type]
        assert out.at.item() == pytest.approx(expected.item(), rel=1e-6)


def test_attention_kd_loss_resizes_teacher_and_validates_arguments() -> None:
    student, _ = _maps(h=8, w=8)
    teacher = torch.randn(2, 1, 16, 16)
    assert torch.isfinite(attention_kd_loss(student, teacher))
    with pytest.raises(ValueError, match="temperature"):
        attention_kd_loss(student, teacher, temperature=0)
    with pytest.raises(ValueError, match="mode"):
        attention_kd_loss(student, teacher, mode="other")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch sizes differ"):
        attention_kd_loss(student, teacher[:1])


# ------------------------------------------------------------------ L_SGM (Eqs. 4-5)
def test_symmetric_form_is_symmetric_and_works_at_batch_size_one() -> None:
    p, _ = _maps(b=1, h=6, w=6)
    s = symmetric_form(p)
    torch.testing.assert_close(s, s.transpose(-1, -2))
    torch.testing.assert_close(s[0, 0], p[0, 0] + p[0, 0].T)
    # The reference code's squeeze() + transpose(1, 2) breaks at B = 1:
    with pytest.raises(IndexError):
        p.squeeze().transpose(1, 2)


def test_symmetric_form_resizes_non_square_maps_to_a_square() -> None:
    s = symmetric_form(torch.randn(2, 1, 6, 10))
    assert s.shape == (2, 1, 10, 10)
    torch.testing.assert_close(s, s.transpose(-1, -2))


def test_sgm_loss_known_values() -> None:
    _, teacher = _maps()
    assert sgm_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)
    # A constant offset c gives (P + c) + (P + c)ᵀ − (P + Pᵀ) = 2c everywhere: MSE = 4c².
    assert sgm_loss(teacher + 0.5, teacher).item() == pytest.approx(1.0, rel=1e-5)
    assert sgm_loss(teacher + 0.5, teacher, pool_size=2).item() == pytest.approx(1.0, rel=1e-5)


def test_sgm_loss_gives_the_student_a_gradient_at_batch_size_one() -> None:
    student, teacher = _maps(b=1)
    student.requires_grad_(True)
    sgm_loss(student, teacher, pool_size=4).backward()
    assert student.grad is not None and student.grad.abs().sum().item() > 0


def test_sgm_forms_known_values() -> None:
    # student = teacher + 0.5 everywhere: each form's value follows by hand.
    _, teacher = _maps()
    student = teacher + 0.5
    # no-transpose: (2P_s − 2P_t)² = (2·0.5)² = 1, the paper form's value for this offset.
    assert sgm_loss(student, teacher, form="no-transpose").item() == pytest.approx(1.0, rel=1e-5)
    # prob: σ(P_s) + σ(P_s)ᵀ − σ(P_t) − σ(P_t)ᵀ, squared and averaged.
    ds, dt = torch.sigmoid(student), torch.sigmoid(teacher)
    expected = ((ds + ds.transpose(-1, -2) - dt - dt.transpose(-1, -2)) ** 2).mean()
    assert sgm_loss(student, teacher, form="prob").item() == pytest.approx(expected.item(),
                                                                           rel=1e-5)
    # teacher-std: per image 4·0.5² / σ_t², averaged over the images.
    sigma = teacher.flatten(1).std(dim=1)
    assert sgm_loss(student, teacher, form="teacher-std").item() == pytest.approx(
        float((1.0 / sigma**2).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="form must be one of"):
        sgm_loss(student, teacher, form="bogus")  # type: ignore[arg-type]


def test_sgm_no_transpose_is_blind_to_the_mirror_and_the_paper_form_is_not() -> None:
    # A student equal to the teacher's transpose has the same P + Pᵀ (paper loss 0) but a
    # different P (no-transpose loss > 0): the intervention removes exactly the mirror pairing.
    _, teacher = _maps()
    mirrored = teacher.transpose(-1, -2).contiguous()
    assert sgm_loss(mirrored, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert sgm_loss(mirrored, teacher, form="no-transpose").item() > 0.1


def test_sgm_form_gradients_by_hand() -> None:
    student, teacher = _maps(b=2)
    n = student.numel()
    for form in ("logits", "no-transpose", "prob", "teacher-std"):
        s = student.clone().requires_grad_(True)
        sgm_loss(s, teacher, form=form).backward()
        if form == "logits":  # d/dP of mean((S_s − S_t)²), S = P + Pᵀ: 2·(D + Dᵀ)·2/n
            d = (s + s.transpose(-1, -2) - teacher - teacher.transpose(-1, -2)).detach()
            expected = 2 * (d + d.transpose(-1, -2)) / n
        elif form == "no-transpose":  # mean((2P_s − 2P_t)²): 8·(P_s − P_t)/n
            expected = 8 * (student - teacher) / n
        elif form == "prob":  # chain rule through σ: σ' = σ(1 − σ)
            p, q = torch.sigmoid(student), torch.sigmoid(teacher)
            d = p + p.transpose(-1, -2) - q - q.transpose(-1, -2)
            expected = 2 * (d + d.transpose(-1, -2)) / n * p * (1 - p)
        else:  # the logits form divided by σ_t² per image
            d = student + student.transpose(-1, -2) - teacher - teacher.transpose(-1, -2)
            sigma = teacher.flatten(1).std(dim=1).view(-1, 1, 1, 1)
            expected = 2 * (d + d.transpose(-1, -2)) / n / sigma**2
        torch.testing.assert_close(s.grad, expected, rtol=1e-4, atol=1e-7)


def test_kdas_loss_sgm_weight_and_form_enter_the_total() -> None:
    (s1, t1), (s2, t2) = _maps(), _maps()
    mask = torch.zeros(2, 1, 8, 8)
    base = KDASLoss(use_at=False)((s1, s2), (t1, t2), mask)
    weighted = KDASLoss(use_at=False, sgm_weight=0.25, sgm_form="prob")((s1, s2), (t1, t2), mask)
    prob = sgm_loss(s1, t1, form="prob")
    assert weighted.sgm.item() == pytest.approx(prob.item(), rel=1e-6)
    assert weighted.total.item() == pytest.approx(0.7 * base.seg.item() + 0.3 * 0.25
                                                  * prob.item(), rel=1e-6)
    assert KDASLoss(sgm_weight=0.25).weights()["sgm"] == pytest.approx(0.075)
    with pytest.raises(ValueError, match="sgm_weight"):
        KDASLoss(sgm_weight=0.0)
    with pytest.raises(ValueError, match="sgm_form"):
        KDASLoss(sgm_form="bogus")  # type: ignore[arg-type]


def test_sgm_forms_are_the_config_choices() -> None:
    from kdas_lite import config
    from kdas_lite.config import ConfigError
    from kdas_lite.losses import SGM_FORMS

    assert SGM_FORMS == config.SGM_FORMS
    assert config.get_preset("smoke").replace(sgm_form="prob", sgm_weight=0.1).sgm_weight == 0.1
    with pytest.raises(ConfigError, match="sgm_form"):
        config.get_preset("smoke").replace(sgm_form="bogus")
    with pytest.raises(ConfigError, match="sgm_weight"):
        config.get_preset("smoke").replace(sgm_weight=-1.0)


# ------------------------------------------------------------------ baselines
def test_pixel_kd_loss_known_value() -> None:
    # Teacher logit 0 (q = 0.5), student logit 2·ln 3 at T = 2 (p = 3/4):
    # KL = 0.5·log(0.5/0.75) + 0.5·log(0.5/0.25) = 0.5·log(4/3); times T² = 4.
    student = torch.full((1, 1, 2, 2), 2 * math.log(3))
    teacher = torch.zeros(1, 1, 2, 2)
    assert pixel_kd_loss(student, teacher, 2.0).item() == pytest.approx(2 * math.log(4 / 3),
                                                                        rel=1e-5)
    assert pixel_kd_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_cwd_loss_known_value() -> None:
    # Uniform student over N = 4 positions; teacher puts logit 2·ln 3·T... q = (3/6, 1/6, 1/6, 1/6).
    student = torch.zeros(1, 1, 2, 2)
    teacher = torch.zeros(1, 1, 2, 2)
    teacher[0, 0, 0, 0] = 2.0 * math.log(3)  # at T = 2: exp(ln 3) = 3
    q = torch.tensor([3 / 6, 1 / 6, 1 / 6, 1 / 6])
    expected = (q * (q / 0.25).log()).sum().item() * 4
    assert cwd_loss(student, teacher, 2.0).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="differ in batch or channels"):
        cwd_loss(torch.zeros(1, 2, 2, 2), teacher)


# ------------------------------------------------------------------ L_KDAS (Eq. 6)
def test_kdas_loss_combines_the_terms_with_alpha() -> None:
    s1, t1 = _maps(seed=1)
    s2, t2 = _maps(seed=2)
    mask = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    out = KDASLoss(alpha=0.3, temperature=2.0)((s1, s2), (t1, t2), mask)
    seg = structure_loss(s1, mask) + structure_loss(s2, mask)
    at = attention_kd_loss(s1, t1) + attention_kd_loss(s2, t2)
    sgm = sgm_loss(s1, t1)
    assert out.seg.item() == pytest.approx(seg.item(), rel=1e-6)
    assert out.at.item() == pytest.approx(at.item(), rel=1e-6)
    assert out.sgm.item() == pytest.approx(sgm.item(), rel=1e-6)
    assert out.kd.item() == 0.0
    assert out.total.item() == pytest.approx((0.7 * seg + 0.3 * (at + sgm)).item(), rel=1e-6)
    assert set(out.as_dict()) == {"loss", "seg", "at", "sgm", "kd"}


@pytest.mark.parametrize(
    ("kwargs", "term"),
    [({"use_sgm": False}, "at"), ({"use_at": False}, "sgm"),
     ({"use_at": False, "use_sgm": False, "baseline": "pixel"}, "kd"),
     ({"use_at": False, "use_sgm": False, "baseline": "cwd"}, "kd")],
)
def test_every_distillation_term_sends_gradient_to_the_student(kwargs: dict, term: str) -> None:
    s1, t1 = _maps(seed=4)
    s2, t2 = _maps(seed=5)
    s1.requires_grad_(True)
    s2.requires_grad_(True)
    loss = KDASLoss(alpha=1.0, **kwargs)  # alpha = 1: only the distillation term remains
    out = loss((s1, s2), (t1, t2), torch.zeros(2, 1, 8, 8))
    assert getattr(out, term).item() > 0
    out.total.backward()
    assert s1.grad is not None and s1.grad.abs().sum().item() > 0


def test_kdas_loss_never_sends_gradient_to_the_teacher() -> None:
    s1, t1 = _maps(seed=6)
    s2, t2 = _maps(seed=7)
    s1.requires_grad_(True)
    t1.requires_grad_(True)  # as if someone forgot torch.no_grad() around the teacher
    t2.requires_grad_(True)
    out = KDASLoss(baseline="pixel")((s1, s2), (t1, t2), torch.zeros(2, 1, 8, 8))
    out.total.backward()
    assert t1.grad is None and t2.grad is None
    assert s1.grad is not None


def test_student_alone_needs_no_teacher_and_ablation_flags_zero_terms() -> None:
    s1, s2 = _maps(seed=8)
    mask = torch.zeros(2, 1, 8, 8)
    out = KDASLoss(use_at=False, use_sgm=False)((s1, s2), None, mask)
    assert out.at.item() == out.sgm.item() == out.kd.item() == 0.0
    assert out.total.item() == pytest.approx(0.7 * out.seg.item(), rel=1e-6)
    with pytest.raises(ValueError, match="teacher outputs are required"):
        KDASLoss()((s1, s2), None, mask)


@pytest.mark.parametrize(
    "kwargs", [{"alpha": 1.5}, {"temperature": 0.0}, {"at_mode": "x"}, {"baseline": "fitnet"}]
)
def test_kdas_loss_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        KDASLoss(**kwargs)


def test_recipes_at_mode_gradient_tables_are_current() -> None:
    # docs/RECIPES.md §3's gradient tables are generated: the block equals what the code gives
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "at_mode_gradients.py"
    spec = importlib.util.spec_from_file_location("at_mode_gradients", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0
