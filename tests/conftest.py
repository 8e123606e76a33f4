"""Shared pytest settings: headless matplotlib, deterministic torch on few threads."""

from __future__ import annotations

import os

import matplotlib
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, os.cpu_count() or 1))
