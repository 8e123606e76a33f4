"""Training loops on CPU at 64 px: end to end, resume, NaN handling, schedule, checkpoints."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from training_helpers import tiny_config, tiny_dataset

from kdas_lite import train as train_module
from kdas_lite.checkpoint_files import load_checkpoint
from kdas_lite.config import ConfigError, TrainConfig
from kdas_lite.errors import CheckpointError, DataError, TrainingError
from kdas_lite.losses import KDASLoss
from kdas_lite.models import PolypPVT, build_student
from kdas_lite.train import (
    DistillationObjective,
    SupervisedObjective,
    TrainStep,
    distill,
    fit,
    load_trained,
    make_optimizer,
    make_scheduler,
    train_teacher,
)
from kdas_lite.viz import plot_history
from kdas_lite.walkthrough import walkthrough_checkpoints, walkthrough_teacher


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


# ---------------------------------------------------------------------------------------------
# end to end
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_teacher_then_distillation_epoch_end_to_end(data_root, tmp_path):
    config = tiny_config(data_root, tmp_path / "run", multi_scale=(0.75, 1.0, 1.25),
                         image_size=96)
    assert config.train_sizes == (64, 96, 128)
    teacher_run = train_teacher(config, progress=False)

    assert teacher_run.run_dir == tmp_path / "run" / "teacher"
    for name in ("best.pth", "last.pth", "config.json", "history.csv", "history.json"):
        assert (teacher_run.run_dir / name).is_file(), name
    record = teacher_run.history[0]
    assert record["epoch"] == 1 and 0.0 <= record["val_dice"] <= 1.0
    assert record["seg"] > 0 and record["at"] == record["sgm"] == 0
    assert teacher_run.best_epoch == 1 and teacher_run.best_val_dice == record["val_dice"]
    assert teacher_run.synthetic  # the folder carries the SYNTHETIC.txt marker
    assert json.loads((teacher_run.run_dir / "config.json").read_text()) == config.to_dict()

    last = load_checkpoint(teacher_run.last_path)
    assert last["train_config"] == config.to_dict()
    assert last["arch"]["encoder"] == "pvt_v2_b0"
    assert last["epoch"] == 1 and last["step"] == 2 * 3  # 2 batches × 3 scales
    best = load_checkpoint(teacher_run.best_path)
    assert best["train_config"] == config.to_dict() and best["val_dice"] == record["val_dice"]

    teacher = teacher_run.model  # passed on directly, as the demo does
    assert_same_weights(weights(load_trained(teacher_run.best_path)), weights(teacher))
    teacher_before = weights(teacher)
    student_run = distill(config, teacher, progress=False)
    assert student_run.run_dir == tmp_path / "run" / "student"
    record = student_run.history[0]
    assert record["at"] > 0 and record["sgm"] > 0 and record["kd"] == 0
    assert math.isclose(record["loss"], 0.7 * record["seg"] + 0.3 * (record["at"] + record["sgm"]),
                        rel_tol=1e-5)
    # the frozen teacher: no gradient, unchanged weights, still in eval mode
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert_same_weights(weights(teacher), teacher_before)
    assert not teacher.training


def test_synthetic_fallback_and_missing_data(tmp_path, monkeypatch):
    import kdas_lite.data.registry

    monkeypatch.delenv("KDAS_DATA", raising=False)
    monkeypatch.setattr(kdas_lite.data.registry, "find_shared_data", lambda: None)
    monkeypatch.chdir(tmp_path)  # no ./data
    config = tiny_config(tmp_path / "nowhere", tmp_path / "run")
    with pytest.raises(DataError, match="does not exist"):
        train_teacher(config, progress=False)
    # without data_root and with synthetic=True a labelled synthetic set is generated
    config = config.replace(data_root=None, synthetic=True, synthetic_images=6,
                            synthetic_test_images=1, synthetic_size=64, epochs=1,
                            max_train_images=2, max_val_images=1)
    loaders = train_module.build_dataloaders(config, (0.5,) * 3, (0.5,) * 3)
    assert loaders[2].synthetic
    assert (tmp_path / "run" / "synthetic-data" / "SYNTHETIC.txt").is_file()
    assert len(loaders[0].dataset) == 2 and len(loaders[1].dataset) == 1


# ---------------------------------------------------------------------------------------------
# steps and schedules
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build_student()
    images = torch.randn(2, 3, 64, 64)
    masks = torch.zeros(2, 1, 64, 64)
    masks[:, :, 16:48, 20:44] = 1
    images[:, 0] += 2 * masks[:, 0]  # the "polyp" is redder
    config = TrainConfig(lr=1e-3, image_size=64)
    step = TrainStep(model, SupervisedObjective(), make_optimizer(model, config))
    losses = [step(images, masks)["loss"] for _ in range(8)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_learning_rate_schedule_changes_the_rate():
    param = torch.nn.Parameter(torch.zeros(1))

    def rates(**overrides) -> list[float]:
        config = TrainConfig(lr=1e-3, epochs=4, **overrides)
        optimizer = torch.optim.AdamW([param], lr=config.lr)
        scheduler = make_scheduler(optimizer, config, steps_per_epoch=5)
        out = []
        for _ in range(20):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out

    cosine = rates(warmup_epochs=1.0, min_lr=1e-5)
    assert cosine[:5] == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4, 1e-3])  # linear warm-up
    assert all(a > b for a, b in itertools.pairwise(cosine[5:]))  # then decays
    assert cosine[-1] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 14
                                                                                   / 15)))
    poly = rates(scheduler="poly", warmup_epochs=0.0, min_lr=0.0)
    assert poly[0] == pytest.approx(1e-3) and poly[10] == pytest.approx(1e-3 * 0.5**0.9)
    assert set(rates(scheduler="constant", warmup_epochs=0.0)) == {1e-3}


def test_gradient_clipping_by_value_and_norm():
    model = torch.nn.Conv2d(3, 1, 1)

    class Huge(SupervisedObjective):
        def forward(self, model, images, masks):
            out = super().forward(model, images, masks)
            out.total = out.total * 1e6
            return out

    class TwoMaps(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = model

        def forward(self, x):
            return self.conv(x), self.conv(x)

    images, masks = torch.randn(2, 3, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    for mode in ("value", "norm"):
        net = TwoMaps()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.0)
        TrainStep(net, Huge(), optimizer, clip=0.5, clip_mode=mode)(images, masks)
        grads = torch.cat([p.grad.flatten() for p in net.parameters()])
        if mode == "value":
            assert grads.abs().max() == pytest.approx(0.5)
        else:
            assert grads.norm() == pytest.approx(0.5, rel=1e-4)


def test_rescale_keeps_masks_binary():
    images = torch.randn(2, 3, 64, 64)
    masks = (torch.rand(2, 1, 64, 64) > 0.5).float()
    small_images, small_masks = train_module._rescale(images, masks, 32)
    assert small_images.shape == (2, 3, 32, 32) and small_masks.shape == (2, 1, 32, 32)
    assert set(small_masks.unique().tolist()) <= {0.0, 1.0}
    assert train_module._rescale(images, masks, 64)[0] is images


def test_teacher_stays_frozen_in_eval_mode():
    teacher = build_student()
    for param in teacher.parameters():  # as left by the teacher's own training
        param.grad = torch.ones_like(param)
    objective = DistillationObjective(teacher, KDASLoss())
    objective.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    student = build_student()
    out = objective(student, torch.randn(2, 3, 64, 64), torch.ones(2, 1, 64, 64))
    out.total.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())


def test_teacher_input_is_renormalised_for_a_teacher_with_other_statistics():
    teacher = PolypPVT("tf_efficientnet_lite0")  # mean = std = 0.5
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    objective = DistillationObjective(teacher, KDASLoss(), *imagenet)
    rgb = torch.rand(1, 3, 8, 8)
    student_input = (rgb - torch.tensor(imagenet[0]).view(1, 3, 1, 1)) / torch.tensor(
        imagenet[1]).view(1, 3, 1, 1)
    torch.testing.assert_close(student_input * objective.scale + objective.shift, (rgb - 0.5) / 0.5)
    same = DistillationObjective(build_student(), KDASLoss(), *imagenet)
    assert same.scale is None and same.shift is None


def test_distill_without_teacher_only_for_student_alone(data_root, tmp_path):
    config = tiny_config(data_root, tmp_path)
    with pytest.raises(TrainingError, match="needs a teacher"):
        distill(config, None, progress=False)
    alone = config.replace(use_at=False, use_sgm=False)
    assert isinstance(train_module.make_objective(alone, None), SupervisedObjective)


def test_seg_weight_scales_the_student_alone_loss_and_its_gradient(data_root, tmp_path):
    # the control for Eq. 6's (1 − α): student alone with ΣL_seg × 0.7, same data and weights
    alone = tiny_config(data_root, tmp_path, use_at=False, use_sgm=False)
    conv = torch.nn.Conv2d(3, 2, 1)  # stands in for a model: two logit maps (P1, P2)
    images, masks = torch.rand(2, 3, 16, 16), (torch.rand(2, 1, 16, 16) > 0.5).float()
    losses, grads = [], []
    for config in (alone, alone.replace(seg_weight=0.7)):
        conv.zero_grad()
        loss = train_module.make_objective(config)(lambda x: conv(x).split(1, dim=1), images,
                                                   masks).total
        loss.backward()
        losses.append(loss.detach())
        grads.append(conv.weight.grad.clone())
    torch.testing.assert_close(losses[1], 0.7 * losses[0])
    torch.testing.assert_close(grads[1], 0.7 * grads[0])
    with pytest.raises(ConfigError, match="seg_weight"):
        alone.replace(use_sgm=True, seg_weight=0.7)  # distillation already scales by 1 − α


# ---------------------------------------------------------------------------------------------
# resume, interruption, NaN
# ---------------------------------------------------------------------------------------------
class Killed(Exception):
    """Stands in for a crash / kill in the middle of training."""


@pytest.mark.slow
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(data_root, tmp_path,
                                                                monkeypatch):
    config = tiny_config(data_root, tmp_path / "straight", epochs=2, warmup_epochs=0.5)
    straight = train_teacher(config, progress=False)
    final = weights(load_trained(straight.last_path))  # last epoch, not the best one

    # stopped cleanly after epoch 1, then resumed
    split = config.replace(output_dir=str(tmp_path / "split"))
    first = train_teacher(split, stop_after_epoch=1, progress=False)
    assert len(first.history) == 1 and load_checkpoint(first.last_path)["epoch"] == 1
    resumed = train_teacher(split, resume=True, progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    assert_same_weights(weights(load_trained(resumed.last_path)), final)
    assert resumed.best_epoch == straight.best_epoch
    assert [r["val_dice"] for r in resumed.history] == [r["val_dice"] for r in
                                                        straight.history]

    # killed in the middle of epoch 2 (its second batch): resumes from epoch 1
    killed = config.replace(output_dir=str(tmp_path / "killed"))
    calls = {"n": 0}
    original = SupervisedObjective.forward

    def crash_on_fourth_batch(self, model, images, masks):
        calls["n"] += 1
        if calls["n"] == 4:  # epoch 1 has 2 batches; this is batch 2 of epoch 2
            raise Killed
        return original(self, model, images, masks)

    monkeypatch.setattr(SupervisedObjective, "forward", crash_on_fourth_batch)
    with pytest.raises(Killed):
        train_teacher(killed, progress=False)
    assert load_checkpoint(tmp_path / "killed" / "teacher" / "last.pth")["epoch"] == 1
    monkeypatch.setattr(SupervisedObjective, "forward", original)
    resumed = train_teacher(killed, resume=True, progress=False)
    assert_same_weights(weights(load_trained(resumed.last_path)), final)


def test_resume_refuses_other_settings(data_root, tmp_path):
    config = tiny_config(data_root, tmp_path, max_train_images=2)
    train_teacher(config, progress=False)
    with pytest.raises(CheckpointError, match=r"lr: 0.0001 → 0.001"):
        train_teacher(config.replace(lr=1e-3), resume=True, progress=False)
    student_dir = tmp_path / "student"
    student_dir.mkdir()
    (student_dir / "last.pth").write_bytes((tmp_path / "teacher" / "last.pth").read_bytes())
    with pytest.raises(CheckpointError, match="teacher run, not a student run"):
        fit(build_student(), config, role="student", resume=True, progress=False)


def test_nan_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(data_root, tmp_path,
                                                                   monkeypatch):
    config = tiny_config(data_root, tmp_path, epochs=2, max_train_images=2)
    original = SupervisedObjective.forward
    calls = {"n": 0}

    def nan_in_epoch_2(self, model, images, masks):
        out = original(self, model, images, masks)
        calls["n"] += 1
        if calls["n"] == 2:  # one batch per epoch: this is epoch 2
            out.seg = out.seg * float("nan")
            out.total = out.total * float("nan")
        return out

    monkeypatch.setattr(SupervisedObjective, "forward", nan_in_epoch_2)
    with pytest.raises(TrainingError, match=r"epoch 2, batch 1.*total=nan, L_seg=nan.*intact"):
        train_teacher(config, progress=False)
    last = load_checkpoint(tmp_path / "teacher" / "last.pth")
    assert last["epoch"] == 1 and len(last["history"]) == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    history = json.loads((tmp_path / "teacher" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1]


# ---------------------------------------------------------------------------------------------
# loading and plotting
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_load_trained_rebuilds_and_rejects_foreign_architectures(data_root, tmp_path):
    config = tiny_config(data_root, tmp_path, max_train_images=2)
    run = train_teacher(config, progress=False)
    model = load_trained(run.best_path)
    assert isinstance(model, PolypPVT) and not model.training
    x = torch.randn(1, 3, 64, 64)
    assert not run.model.training
    with torch.no_grad():
        torch.testing.assert_close(model(x)[1], run.model(x)[1])
    with pytest.raises(CheckpointError, match=r"missing keys|shape mismatches"):
        load_trained(run.best_path, model=PolypPVT("pvt_v2_b1"))
    plain = tmp_path / "plain.pth"
    torch.save({"weights": torch.zeros(1)}, plain)
    with pytest.raises(CheckpointError, match="no architecture description"):
        load_trained(plain)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"corrupt\.pth"):
        load_trained(corrupt)

    ax = plot_history(run.run_dir)
    assert [line.get_label() for line in ax.get_lines()] == ["total loss", "L_seg"]
    with pytest.raises(DataError, match="no training history"):
        plot_history(tmp_path / "nothing")


def test_walkthrough_checkpoints_train_what_is_missing_once(data_root, tmp_path, capsys):
    config = tiny_config(data_root, tmp_path, epochs=2)
    # nothing yet: a quick 1-epoch teacher, and a quick student distilled from it
    teacher, student = walkthrough_checkpoints(config, progress=False)
    assert teacher == tmp_path / "quick" / "teacher" / "best.pth"
    assert student == tmp_path / "quick" / "student" / "best.pth"
    assert len(json.loads((tmp_path / "quick" / "student" / "history.json").read_text())) == 1
    stamp = student.stat().st_mtime_ns
    assert walkthrough_checkpoints(config, progress=False) == (teacher, student)  # reused
    assert walkthrough_teacher(config, progress=False) == teacher  # notebook 04's call
    assert student.stat().st_mtime_ns == stamp
    # notebook 01's teacher exists: the student is notebook 04's KDAS run, at full length
    real = train_teacher(config, progress=False).best_path
    capsys.readouterr()
    teacher, student = walkthrough_checkpoints(config, progress=False)
    assert (teacher, student) == (real, tmp_path / "kdas" / "student" / "best.pth")
    assert "as notebook 04 does" in capsys.readouterr().out
    stamp = student.stat().st_mtime_ns
    kdas_run = config.replace(output_dir=str(tmp_path / "kdas"))
    assert len(distill(kdas_run, real, resume=True, progress=False).history) == 2  # 04 reuses it
    assert student.stat().st_mtime_ns == stamp
    assert walkthrough_teacher(config, progress=False) == real
    for given in ({"teacher": tmp_path / "missing.pth"}, {"student": tmp_path / "missing.pth"}):
        with pytest.raises(CheckpointError, match=r"checkpoint not found: .*missing\.pth"):
            walkthrough_checkpoints(config, **given)


# ---------------------------------------------------------------------------------------------
# an existing run folder; the teacher's identity
# ---------------------------------------------------------------------------------------------
def test_a_finished_run_is_not_replaced_without_resume_or_overwrite(data_root, tmp_path):
    config = tiny_config(data_root, tmp_path, max_train_images=2)
    earlier = tmp_path / "teacher"
    earlier.mkdir()
    for name in ("best.pth", "history.json"):  # stand-ins for an earlier run's files
        (earlier / name).write_text("earlier run")
    with pytest.raises(TrainingError, match=r"already holds a teacher run \(best\.pth\).*"
                                            r"--resume.*--overwrite"):
        train_teacher(config, progress=False)
    with pytest.raises(TrainingError, match="exclude each other"):
        train_teacher(config, resume=True, overwrite=True, progress=False)
    assert (earlier / "best.pth").read_text() == "earlier run"
    again = train_teacher(config, overwrite=True, progress=False)
    assert [r["epoch"] for r in again.history] == [1]
    assert load_checkpoint(again.best_path)["train_config"] == config.to_dict()
    assert len(json.loads((earlier / "history.json").read_text())) == 1


def save_model(model: torch.nn.Module, path) -> str:
    torch.save({"arch": model.config(), "model": model.state_dict()}, path)
    return str(path)


def test_distill_refuses_a_student_as_teacher_and_another_teacher_on_resume(data_root,
                                                                            tmp_path):
    import hashlib

    torch.manual_seed(1)
    b0 = save_model(PolypPVT("pvt_v2_b0"), tmp_path / "b0.pth")
    other = save_model(PolypPVT("pvt_v2_b0"), tmp_path / "other_b0.pth")
    config = tiny_config(data_root, tmp_path / "run", epochs=2, max_train_images=2)
    with pytest.raises(TrainingError, match=r"b0\.pth \(pvt_v2_b0, .*no larger than the "
                                            r"student.*--teacher-encoder pvt_v2_b0"):
        distill(config.replace(teacher_encoder="pvt_v2_b2"), b0, progress=False)
    assert not (tmp_path / "run" / "student").exists()

    with pytest.warns(UserWarning, match="no larger than the student.*distilling anyway"):
        run = distill(config, b0, stop_after_epoch=1, progress=False)
    recorded = json.loads((run.run_dir / "teacher.json").read_text())
    digest = hashlib.sha256((tmp_path / "b0.pth").read_bytes()).hexdigest()
    assert (recorded["encoder"], recorded["file"], recorded["file_sha256"]) == (
        "pvt_v2_b0", b0, digest)
    assert load_checkpoint(run.last_path)["teacher"] == recorded
    with pytest.raises(CheckpointError, match=r"another teacher .*b0\.pth.*other_b0\.pth"), \
            pytest.warns(UserWarning):
        distill(config, other, resume=True, progress=False)
    # the same weights passed as a model (as the demo does) are the same teacher
    with pytest.warns(UserWarning):
        resumed = distill(config, load_trained(b0), resume=True, stop_after_epoch=1,
                          progress=False)
    assert [r["epoch"] for r in resumed.history] == [1]
