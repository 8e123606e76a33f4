"""Mixed precision and gradient accumulation, checked on the CPU with faked GPU properties.

- the dtype: bf16 only at compute capability ≥ 8.0 (A100), fp16 + gradient scaler below
  (T4, 7.5), whatever ``torch.cuda.is_bf16_supported()`` says (it counts emulation);
- one training step under CPU autocast, so the AMP code path runs in CI;
- ``accumulate_steps``: the same gradients as the whole batch;
- evaluation in float32 unless mixed precision is asked for, and then named in the table.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from kdas_lite.colab import device_info
from kdas_lite.config import ConfigError, TrainConfig
from kdas_lite.evaluate import EvaluationTable, evaluate
from kdas_lite.losses import KDASLoss
from kdas_lite.models import PolypPVT
from kdas_lite.train import (
    DistillationObjective,
    SupervisedObjective,
    TrainStep,
    amp_dtype_for,
    autocast_dtype,
)

GPUS = {"T4": SimpleNamespace(name="Tesla T4", major=7, minor=5, total_memory=15 * 2**30),
        "A100": SimpleNamespace(name="NVIDIA A100-SXM4-40GB", major=8, minor=0,
                                total_memory=40 * 2**30)}


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend a CUDA GPU is present: ``fake_gpu("T4")``. ``is_bf16_supported`` answers True
    (as it does on a T4 through emulation) so that a test sees it is not what decides."""

    def install(kind: str) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: GPUS[kind])
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    return install


@pytest.mark.parametrize(("gpu", "dtype"), [("T4", torch.float16), ("A100", torch.bfloat16)])
def test_mixed_precision_dtype_follows_compute_capability(fake_gpu, gpu, dtype) -> None:
    fake_gpu(gpu)
    cuda = torch.device("cuda")
    assert amp_dtype_for(cuda) == dtype
    assert autocast_dtype(TrainConfig(amp=True), cuda) == dtype
    assert autocast_dtype(TrainConfig(amp=False), cuda) is None  # the paper preset: float32
    assert autocast_dtype(TrainConfig(amp=True), torch.device("cpu")) is None
    info = device_info("auto")
    assert info.device.type == "cuda" and info.amp_dtype == dtype
    line = info.describe()
    assert GPUS[gpu].name in line and f"compute capability {GPUS[gpu].major}." in line
    assert ("float16 + gradient scaler" in line) == (gpu == "T4")


def _tiny_model() -> PolypPVT:
    torch.manual_seed(0)
    return PolypPVT("pvt_v2_b0", pretrained=False, channel=8)


def _batch(n: int = 4, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(n, 3, size, size, generator=generator)
    masks = (torch.rand(n, 1, size, size, generator=generator) > 0.6).float()
    return images, masks


def test_one_training_step_under_cpu_autocast_runs_in_bfloat16() -> None:
    model = _tiny_model().train()
    before = copy.deepcopy(model.state_dict())
    seen = []
    handle = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).register_forward_hook(
        lambda _m, _i, out: seen.append(out.dtype))
    step = TrainStep(model, SupervisedObjective(), torch.optim.AdamW(model.parameters(), 1e-3),
                     amp_dtype=torch.bfloat16)
    values = step(*_batch(2))
    handle.remove()
    assert seen == [torch.bfloat16]  # the convolution really ran under autocast
    assert all(np.isfinite(v) for v in values.values()) and values["loss"] > 0
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "the step updated no weight"


def _grads_after_step(model: nn.Module, objective: nn.Module, accumulate: int
                      ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    model = copy.deepcopy(model)
    step = TrainStep(model, objective, torch.optim.SGD(model.parameters(), lr=0.0), clip=None,
                     accumulate_steps=accumulate)
    values = step(*_batch(5))
    return values, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("distil", [False, True], ids=["supervised", "kdas"])
def test_accumulated_micro_batches_give_the_full_batch_gradient(distil: bool) -> None:
    # eval mode: BatchNorm uses its running statistics and stochastic depth is off, the only
    # things that see a micro-batch differently from the batch
    model = _tiny_model().eval()
    if distil:
        torch.manual_seed(1)
        teacher = PolypPVT("pvt_v2_b0", pretrained=False, channel=8).eval()
        objective = DistillationObjective(teacher, KDASLoss(alpha=0.3, temperature=2.0))
    else:
        objective = SupervisedObjective()
    full_values, full = _grads_after_step(model, objective, 1)
    for k in (2, 3, 5):  # 5 images in 2, 3 (uneven: 2 + 2 + 1) and 5 micro-batches
        values, grads = _grads_after_step(model, objective, k)
        assert grads.keys() == full.keys() and len(full) > 10
        for name, grad in full.items():
            torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-7, msg=name)
        for key, value in full_values.items():
            if key != "at":
                assert values[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
        # L_AT is the KL of two nearly equal distributions over 64² positions: float32 log-
        # probabilities (|log p| ≈ ln 4096 ≈ 8.3, each rounded by ≈ 1e-6) nearly cancel, so its
        # value moves by up to ~T²·2e-6 with the shape of the batch whatever the accumulation
        # does. The logged value must be exactly the size-weighted mean over the micro-batches,
        # and equal to the full batch's within that float32 bound.
        images, masks = _batch(5)
        with torch.no_grad():
            parts = [(len(i) / 5, float(objective(model, i, m).at))
                     for i, m in zip(images.tensor_split(k), masks.tensor_split(k), strict=True)]
        assert values["at"] == pytest.approx(sum(w * v for w, v in parts), rel=1e-6)
        assert values["at"] == pytest.approx(full_values["at"], abs=4 * 2e-6)
    assert any(g.abs().max() > 0 for g in full.values())


def test_accumulate_steps_is_validated() -> None:
    assert TrainConfig(batch_size=16, accumulate_steps=4).accumulate_steps == 4
    with pytest.raises(ConfigError, match=r"accumulate_steps=17: must be at most batch_size=16"):
        TrainConfig(batch_size=16, accumulate_steps=17)
    with pytest.raises(ConfigError, match="accumulate_steps=0: must be ≥ 1"):
        TrainConfig(accumulate_steps=0)


class _ConvDetector(nn.Module):
    """A 1×1 convolution on the image: records the dtype it computes in."""

    input_mean = (0.5, 0.5, 0.5)
    input_std = (0.25, 0.25, 0.25)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        self.dtypes: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.conv(x)
        self.dtypes.append(out.dtype)
        return out, out


def test_evaluation_scores_in_float32_unless_mixed_precision_is_asked(tmp_path: Path) -> None:
    folder = tmp_path / "Kvasir"
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            folder / "images" / f"{i}.png")
        Image.fromarray((rng.random((32, 32)) > 0.5).astype(np.uint8) * 255).save(
            folder / "masks" / f"{i}.png")
    model = _ConvDetector()
    default = evaluate(model, {"Kvasir": folder}, size=32, progress=False, name="m")
    assert model.dtypes == [torch.float32] and default.precision == "float32"
    assert "mixed precision" not in default.caption()
    model.dtypes.clear()
    mixed = evaluate(model, {"Kvasir": folder}, size=32, progress=False, name="m",
                     precision="bfloat16")
    assert model.dtypes == [torch.bfloat16]
    assert mixed.caption().endswith("mixed precision (bfloat16)")
    assert EvaluationTable.from_csv(mixed.to_csv(tmp_path / "t.csv")).precision == "bfloat16"
    assert mixed.to_dict()["precision"] == "bfloat16"
    with pytest.raises(ValueError, match="precision must be one of"):
        evaluate(model, {"Kvasir": folder}, size=32, progress=False, precision="half")
