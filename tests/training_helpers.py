"""Shared fixtures of the training tests: tiny synthetic data and a tiny training config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdas_lite.config import TrainConfig
from kdas_lite.data import make_synthetic_dataset


def tiny_dataset(folder: Path) -> Path:
    """Ten synthetic 64-px training pairs (no test sets)."""
    return make_synthetic_dataset(folder / "synthetic", n_train=10, n_test=0, size=64, seed=0)


def tiny_config(data_root: Path, output_dir: Path, **overrides: Any) -> TrainConfig:
    """A 64-px, 2-images-per-batch run; the "teacher" is PVTv2-b0 to keep tests fast."""
    base = {
        "data_root": str(data_root), "output_dir": str(output_dir), "image_size": 64,
        "multi_scale": (1.0,), "batch_size": 2, "epochs": 1, "warmup_epochs": 0.0,
        "max_train_images": 4, "max_val_images": 2, "val_fraction": 0.2, "num_workers": 0,
        "teacher_encoder": "pvt_v2_b0", "cache": "memory", "seed": 0,
    }
    return TrainConfig(**{**base, **overrides})
