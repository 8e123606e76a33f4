"""The GPU paths: forward, AMP training steps, distillation, evaluation on CUDA.

Marked ``cuda`` and skipped without a CUDA device; ``benchmarks/gpu_check.sh`` runs them on
a GPU machine (``pytest -m cuda tests/test_cuda.py``). Tiny models and images: seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kdas_lite.config import TrainConfig
from kdas_lite.evaluate import evaluate
from kdas_lite.metrics import batch_dice
from kdas_lite.models import PolypPVT
from kdas_lite.train import TrainStep, autocast_dtype, make_objective, make_optimizer

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

STUDENT, TEACHER = "tf_efficientnet_lite0", "tf_efficientnet_lite2"
SIZE = 64


@pytest.fixture(autouse=True)
def _exact_fp32():
    """Full float32 on the GPU (no TF32), so CPU and CUDA can be compared closely."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _model(encoder: str = STUDENT, seed: int = 0) -> PolypPVT:
    torch.manual_seed(seed)
    return PolypPVT(encoder)


def _batch(n: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, SIZE, SIZE, generator=g)
    masks = (torch.rand(n, 1, SIZE, SIZE, generator=g) > 0.7).float()
    return images, masks


def test_forward_on_cuda_matches_cpu() -> None:
    model = _model().eval()
    x, _ = _batch()
    with torch.no_grad():
        cpu = model(x)
        gpu = model.cuda()(x.cuda())
    for a, b in zip(cpu, gpu, strict=True):
        assert b.is_cuda and b.shape == (2, 1, SIZE, SIZE)
        assert float((a - b.cpu()).abs().max()) < 1e-3


@pytest.mark.parametrize("distil", [False, True])
def test_amp_training_step_is_finite_and_moves_the_student(distil: bool) -> None:
    device = torch.device("cuda")
    config = TrainConfig(device="cuda", amp=True, teacher_encoder=TEACHER,
                         student_encoder=STUDENT, **({} if distil else
                                                     {"use_at": False, "use_sgm": False}))
    student = _model().to(device, memory_format=torch.channels_last).train()
    teacher = _model(TEACHER, seed=1).to(device).eval() if distil else None
    objective = make_objective(config, teacher, student).to(device)
    dtype = autocast_dtype(config, device)
    assert dtype in (torch.bfloat16, torch.float16)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    step = TrainStep(student, objective, make_optimizer(student, config), None, scaler, device,
                     dtype, config.clip, config.clip_mode, channels_last=True)
    before = [p.detach().clone() for p in student.parameters()]
    values = step(*_batch())
    assert all(np.isfinite(v) for v in values.values())
    assert (values["at"] > 0) == distil and (values["sgm"] > 0) == distil
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))
    if teacher is not None:  # the frozen teacher gets no gradient
        assert all(p.grad is None for p in teacher.parameters())


def test_batch_dice_on_cuda_matches_cpu() -> None:
    probs, masks = torch.rand(3, 1, 16, 16), (torch.rand(3, 1, 16, 16) > 0.5).float()
    gpu = batch_dice(probs.cuda(), masks.cuda())
    assert gpu.is_cuda and torch.allclose(gpu.cpu(), batch_dice(probs, masks))


def test_evaluate_on_cuda_matches_cpu(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "Kvasir"
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True)
    for i, (h, w) in enumerate([(70, 90), (64, 64), (81, 53)]):
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4: h // 2, w // 3: w - 5] = 255
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            folder / "images" / f"{i}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{i}.png")
    model = _model()
    kwargs = {"size": SIZE, "batch_size": 2, "progress": False, "cache_dir": tmp_path / "cache"}
    cpu = evaluate(model, {"Kvasir": folder}, device="cpu", **kwargs)
    gpu = evaluate(model, {"Kvasir": folder}, device="cuda", **kwargs)  # fp16 autocast
    assert gpu.device == "cuda" and gpu.n_images == cpu.n_images
    for name in ("meanDic", "wFm", "Sm", "MAE"):
        assert abs(gpu.rows["Kvasir"][name] - cpu.rows["Kvasir"][name]) < 2e-2, name
