"""experiments/sgm_map_stats.py: regions, the pooled statistics and the mirror count on small
hand-made maps (the measurement on trained models is not run here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
stats = pytest.importorskip("sgm_map_stats")


def square_gt() -> torch.Tensor:
    """A 12×12 image with a polyp in rows 2–5, columns 6–9 (its mirror: rows 6–9, cols 2–5)."""
    gt = torch.zeros(1, 1, 12, 12, dtype=torch.bool)
    gt[..., 2:6, 6:10] = True
    return gt


def test_regions_partition_the_image_into_background_band_and_interior() -> None:
    gt = square_gt()
    r = stats.regions(gt, band=1)
    total = r["background"].int() + r["band"].int() + r["interior"].int()
    assert torch.equal(total, torch.ones_like(total))  # a partition
    assert r["interior"].sum() == 4  # the 4×4 square eroded by 1 px: 2×2
    assert r["band"].sum() == 6 * 6 - 4  # dilated 6×6 minus the interior
    assert not (r["interior"] & ~gt).any() and not (r["background"] & gt).any()


def test_accumulator_logits_regions_and_the_mirror_by_hand() -> None:
    gt = square_gt()
    good = torch.where(gt, 4.0, -4.0)  # P1 = P2 = ±4: P1 + P2 = ±8
    mirrored = good.clone()
    mirrored[..., 6:10, 2:6] = 4.0  # + L_SGM's map: a false positive on the polyp's mirror
    acc = stats.Accumulator()
    acc.update({"teacher": (good, good), "alone": (good, good), "sgm": (mirrored, mirrored)},
               gt, band=1)
    out = acc.result()
    assert out["logits"]["alone/p1/bg"] == pytest.approx({"mean": -4.0, "std": 0.0,
                                                          "mean_abs": 4.0})
    assert out["logits"]["alone/sum/fg"]["mean"] == pytest.approx(8.0)
    n_bg = 144 - 16
    assert out["logits"]["sgm/p1/bg"]["mean"] == pytest.approx((16 * 4 - (n_bg - 16) * 4) / n_bg)
    # the change sits in the background (the mirror square is far from the polyp's edge ...
    # except where the band reaches it): all of |Δp| is outside the polyp
    assert out["regions"]["interior"]["mean_abs_delta_p"] == pytest.approx(0.0)
    assert out["regions"]["background"]["mean_delta_p"] > 0
    assert out["error_rates"]["alone"]["fp_rate_background"] == 0.0
    assert out["error_rates"]["sgm"]["fn_rate_interior"] == 0.0
    assert out["mirror"]["sgm"] == {"false_positive_pixels": 16.0,
                                    "share_with_polyp_mirror": 1.0}
    assert out["mirror"]["alone"]["share_with_polyp_mirror"] is None  # no false positive
    assert out["mirror"]["chance"] == pytest.approx(16 / n_bg)
    text = stats.markdown({"0": {"all": out}}, band=1)
    assert "| 0 | 0.125 | — | — | 1.000 | 0 / 16 |" in text
    assert "| 0 | P1 | -4.00 ± 0.00 | -4.00 ± 0.00 |" in text


class Red(torch.nn.Module):
    """P1 = P2 = s·(red − c): a fixed "segmenter" of the synthetic polyps (drawn red)."""

    input_mean = (0.5, 0.5, 0.5)
    input_std = (0.5, 0.5, 0.5)

    def __init__(self, scale: float, shift: float = 0.0) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.scale * (x[:, :1] - self.shift)
        return p, p


def test_measure_runs_on_test_folders_and_pools_every_set(tmp_path) -> None:
    from kdas_lite.data import find_layout, make_synthetic_dataset

    root = make_synthetic_dataset(tmp_path / "syn", n_train=2, n_test=3, size=64, seed=0)
    folders = dict(find_layout(root).test)
    models = {"teacher": Red(8.0), "alone": Red(4.0), "sgm": Red(4.0, shift=0.5)}
    out = stats.measure(models, folders, size=64, band=2, batch_size=2)
    assert set(out) == {*folders, "all"}
    regions = out["all"]["regions"]
    assert sum(r["pixel_share"] for r in regions.values()) == pytest.approx(1.0)
    assert sum(r["share_of_abs_delta"] for r in regions.values()) == pytest.approx(1.0)
    # sgm = alone shifted down everywhere: p falls in every region
    assert all(r["mean_delta_p"] < 0 for r in regions.values())
    logits = out["all"]["logits"]
    assert logits["teacher/p1/bg"]["std"] == pytest.approx(2 * logits["alone/p1/bg"]["std"],
                                                          rel=1e-4)
    assert "| seed |" in stats.markdown({"0": out}, band=2)
