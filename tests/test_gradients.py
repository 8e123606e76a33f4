"""The gradient of each loss term on the student (kdas_lite.gradients) and its probe in fit()."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from training_helpers import tiny_config, tiny_dataset

from kdas_lite.gradients import equalizing_weight, term_gradients
from kdas_lite.losses import KDASLoss, sgm_loss, structure_loss
from kdas_lite.models import build_student
from kdas_lite.train import DistillationObjective, SupervisedObjective, distill


class TwoMaps(nn.Module):
    """A tiny "segmenter": a 1×1 conv and a batch-norm, two logit maps (P1, P2)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 2, 1)
        self.norm = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p1, p2 = self.norm(self.conv(x)).split(1, dim=1)
        return p1, p2


def flat_grad(loss: torch.Tensor, model: nn.Module) -> torch.Tensor:
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True,
                                retain_graph=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                      for g, p in zip(grads, model.parameters(), strict=True)])


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 16, 16, generator=g)
    masks = torch.zeros(2, 1, 16, 16)
    masks[:, :, 3:9, 5:13] = 1
    return images, masks


def test_gradients_match_each_weighted_term_computed_by_hand(batch):
    images, masks = batch
    student, teacher = TwoMaps(0), TwoMaps(1)
    alpha = 0.3
    objective = DistillationObjective(teacher, KDASLoss(alpha=alpha, use_at=False))
    result = term_gradients(student, objective, images, masks)
    assert set(result) == {"grad_seg", "grad_sgm", "cos_sgm"}

    student.eval()  # the measurement's mode
    s1, s2 = student(images)
    with torch.no_grad():
        t1, _ = teacher.eval()(images)
    g_seg = flat_grad((1 - alpha) * (structure_loss(s1, masks) + structure_loss(s2, masks)),
                      student)
    s1, _ = student(images)
    g_sgm = flat_grad(alpha * sgm_loss(s1, t1), student)
    assert result["grad_seg"] == pytest.approx(float(g_seg.norm()), rel=1e-5)
    assert result["grad_sgm"] == pytest.approx(float(g_sgm.norm()), rel=1e-5)
    assert result["cos_sgm"] == pytest.approx(
        float(torch.nn.functional.cosine_similarity(g_sgm, g_seg, dim=0)), abs=1e-5)
    assert -1 <= result["cos_sgm"] <= 1


def test_the_terms_sum_to_the_training_loss_and_its_gradient(batch):
    images, masks = batch
    student, teacher = TwoMaps(0), TwoMaps(1)
    objective = DistillationObjective(teacher, KDASLoss(baseline="cwd"))
    student.eval()
    terms = objective.weighted_terms(student, images, masks)
    assert set(terms) == {"seg", "at", "sgm", "kd"}
    total = objective(student, images, masks).total
    torch.testing.assert_close(sum(terms.values()), total)
    torch.testing.assert_close(sum(flat_grad(t, student) for t in terms.values()),
                               flat_grad(objective(student, images, masks).total, student))


def test_measurement_leaves_grads_mode_and_batchnorm_statistics_alone(batch):
    images, masks = batch
    student = TwoMaps(0).train()
    for p in student.parameters():
        p.grad = torch.full_like(p, 7.0)
    buffers = {k: v.clone() for k, v in student.state_dict().items()}
    result = term_gradients(student, SupervisedObjective(), images, masks)
    assert set(result) == {"grad_seg"} and result["grad_seg"] > 0
    assert student.training
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in student.parameters())
    for key, value in student.state_dict().items():
        assert torch.equal(value, buffers[key]), key


def test_a_term_without_gradient_has_norm_and_cosine_zero(batch):
    # the public code's L_AT: a constant for the student (softmax over one channel)
    images, masks = batch
    objective = DistillationObjective(TwoMaps(1), KDASLoss(use_sgm=False, at_mode="reference"))
    result = term_gradients(TwoMaps(0), objective, images, masks)
    assert result["grad_at"] == 0.0 and result["cos_at"] == 0.0 and result["grad_seg"] > 0


@pytest.mark.slow
def test_probe_adds_measurements_to_the_history_and_changes_no_weight(tmp_path):
    data_root = tiny_dataset(tmp_path / "data")
    torch.manual_seed(1)
    teacher = build_student()  # PVTv2-b0, as tiny_config's teacher_encoder says
    config = tiny_config(data_root, tmp_path / "plain", epochs=2, use_at=False)
    runs = {}
    for name, probe in (("plain", False), ("probed", True)):
        run = config.replace(output_dir=str(tmp_path / name))
        torch.manual_seed(0)
        student = build_student()
        with pytest.warns(UserWarning, match="no larger than the student"):
            runs[name] = distill(run, teacher, student, probe_gradients=probe, progress=False)
    plain, probed = runs["plain"], runs["probed"]
    assert all("grad_seg" not in record for record in plain.history)
    for record in probed.history:
        assert record["grad_seg"] > 0 and record["grad_sgm"] > 0
        assert -1 <= record["cos_sgm"] <= 1
    assert probed.history[0]["grad_sgm"] != probed.history[1]["grad_sgm"]  # the weights moved
    for a, b in zip(plain.model.state_dict().values(), probed.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert [r["val_dice"] for r in plain.history] == [r["val_dice"] for r in probed.history]


def test_equalizing_weight_makes_the_sgm_gradient_as_large_as_the_seg_gradient(batch):
    images, masks = batch
    student, teacher = TwoMaps(0), TwoMaps(1)
    objective = DistillationObjective(teacher, KDASLoss(use_at=False))
    before = term_gradients(student, objective, images, masks)
    w = equalizing_weight(student, objective, images, masks)
    assert w == pytest.approx(before["grad_seg"] / before["grad_sgm"], rel=1e-6)
    objective.loss.sgm_weight = w
    after = term_gradients(student, objective, images, masks)
    assert after["grad_sgm"] == pytest.approx(after["grad_seg"], rel=1e-5)
    assert after["cos_sgm"] == pytest.approx(before["cos_sgm"], abs=1e-6)  # direction unchanged
    with pytest.raises(ValueError, match="not switched on"):
        equalizing_weight(student, objective, images, masks, term="kd")


def test_pairwise_cosines_between_the_distillation_terms(batch):
    images, masks = batch
    student, teacher = TwoMaps(0), TwoMaps(1)
    objective = DistillationObjective(teacher, KDASLoss(alpha=0.3))
    plain = term_gradients(student, objective, images, masks)
    both = term_gradients(student, objective, images, masks, pairwise=True)
    assert set(both) == set(plain) | {"cos_at_sgm"}
    assert {k: both[k] for k in plain} == pytest.approx(plain)
    student.eval()  # the measurement's mode
    g_at = flat_grad(objective.weighted_terms(student, images, masks)["at"], student)
    g_sgm = flat_grad(objective.weighted_terms(student, images, masks)["sgm"], student)
    expected = float(g_at @ g_sgm / (g_at.norm() * g_sgm.norm()))
    assert both["cos_at_sgm"] == pytest.approx(expected, abs=1e-6)
    assert -1 < expected < 1  # two different directions: the check can fail
