"""Known values, gradients and error paths of every KDAS loss term."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdas_lite.losses import (
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
