"""The T4 training path, run on the CPU: fp16 autocast with a gradient scaler (issue 30).

A Colab T4 (compute capability 7.5) trains in float16 with ``torch.amp.GradScaler``
(:func:`kdas_lite.train.amp_dtype_for`); no CI machine has one and the CUDA tests skip, so
without this file that path would never execute. PyTorch runs fp16 autocast and
``GradScaler("cpu")`` on a CPU: here :func:`~kdas_lite.train.fit` is made to choose float16 as
it does on a T4, and everything after that choice is the real code:

- a teacher and a distillation run train in fp16 with the scaler, whose state is checkpointed
  (at torch's initial scale, 2**16, the first step of this tiny run overflows and is skipped,
  as on a real T4);
- a step whose scaled gradients overflow is skipped (no weight moves, the scale halves) and
  the next one is taken;
- ``resume`` restores the scaler's state (its scale and growth counter), not a fresh one.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from training_helpers import tiny_config, tiny_dataset

from kdas_lite import train as train_module
from kdas_lite.checkpoint_files import load_checkpoint, save_checkpoint
from kdas_lite.models import PolypPVT
from kdas_lite.train import SupervisedObjective, TrainStep, distill, train_teacher


def _small() -> PolypPVT:
    """PVTv2-b0 with an 8-channel decoder, random weights (the same for every call)."""
    torch.manual_seed(0)
    return PolypPVT("pvt_v2_b0", pretrained=False, channel=8)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture
def t4_precision(monkeypatch) -> list[torch.dtype]:
    """``fit`` chooses what it chooses on a T4 (float16, so a gradient scaler) on this CPU;
    returns the dtypes the models' first convolution produced while training."""
    monkeypatch.setattr(train_module, "autocast_dtype",
                        lambda config, device: torch.float16 if config.amp else None)
    seen: list[torch.dtype] = []
    original = nn.Conv2d.forward

    def forward(self, x):
        out = original(self, x)
        if torch.is_grad_enabled():
            seen.append(out.dtype)
        return out

    monkeypatch.setattr(nn.Conv2d, "forward", forward)
    return seen


def test_teacher_and_distillation_train_in_fp16_with_the_scaler_and_resume_restores_it(
        data_root, tmp_path, t4_precision) -> None:
    # seconds, not minutes: fp16 on a CPU is slow, so one 32-px step per epoch, a small decoder
    config = tiny_config(data_root, tmp_path / "runs", epochs=2, amp=True, image_size=32,
                         max_train_images=2, max_val_images=1)
    first = train_teacher(config, _small(), stop_after_epoch=1, progress=False)
    assert set(t4_precision) == {torch.float16}, "the steps ran under fp16 autocast"
    state = load_checkpoint(first.last_path)
    scaler = state["scaler"]  # a disabled scaler's state is {}
    assert scaler["scale"] <= 2.0**16 and scaler["growth_interval"] == 2000  # enabled
    assert all(math.isfinite(v) for k, v in first.history[0].items() if k != "epoch")
    # resume: the scaler continues from the checkpoint (a state marked here), not afresh
    marked = {**scaler, "scale": 1024.0, "_growth_tracker": 5}
    save_checkpoint({**state, "scaler": marked}, first.last_path)
    resumed = train_teacher(config, _small(), resume=True, progress=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    scaler = load_checkpoint(resumed.last_path)["scaler"]
    assert scaler["scale"] == 1024.0 and scaler["_growth_tracker"] == 6  # one more good step
    t4_precision.clear()
    student = distill(config.replace(epochs=1), resumed.best_path, _small(), progress=False)
    assert set(t4_precision) == {torch.float16}  # teacher and student forward in fp16
    assert load_checkpoint(student.last_path)["scaler"]["scale"] <= 2.0**16  # enabled
    assert all(math.isfinite(student.history[0][k]) for k in ("loss", "seg", "at", "sgm"))


def test_a_step_whose_scaled_gradients_overflow_is_skipped() -> None:
    model = _small().train()
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)  # fp16 gradients overflow at once
    step = TrainStep(model, SupervisedObjective(), optimizer, scaler=scaler,
                     amp_dtype=torch.float16)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 32, 32, generator=generator)
    masks = (torch.rand(2, 1, 32, 32, generator=generator) > 0.6).float()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    values = step(images, masks)
    assert math.isfinite(values["loss"])  # the loss is fine; only its scaled gradients are not
    assert all(torch.equal(v, before[k]) for k, v in model.named_parameters()), "skipped"
    assert optimizer.state == {} and scaler.get_scale() == 2.0**39  # no AdamW step; backed off
    scaler.update(2.0**10)  # a scale whose gradients fit in fp16: the next step is taken
    step(images, masks)
    assert optimizer.state and any(not torch.equal(v, before[k])
                                   for k, v in model.named_parameters())
