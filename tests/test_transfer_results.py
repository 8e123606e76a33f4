"""The transfer-set analysis (kdas_lite.transfer_results) on made-up records."""

from __future__ import annotations

import math
import statistics

import pytest

from kdas_lite.transfer_results import (
    MARGIN,
    analyse,
    holm,
    markdown,
    pool_score,
    random_effects,
    reading,
)

SETS = {"Kvasir": 2, "CVC-ClinicDB": 2, "CVC-ColonDB": 3, "CVC-300": 1, "ETIS-LaribPolypDB": 1}
ORDER = {name: [f"{name}-{i}" for i in range(n)] for name, n in SETS.items()}


def record(arm: str, teacher: int, seed: int, level: float, labels: int = 200) -> dict:
    dice = {name: [level] * n for name, n in SETS.items()}
    dice["CVC-300"] = [0.0]  # a duplicate set: must never count
    return {"arm": arm, "labels": labels, "teacher": teacher, "seed": seed,
            "image_dice": dice}


def test_pool_score_counts_distinct_images_and_never_cvc300():
    r = record("A", 0, 0, 0.5)
    r["image_dice"]["Kvasir"] = [1.0, 1.0]
    assert pool_score(r, "all", ORDER) == pytest.approx((2 + 0.5 * 6) / 8)
    assert pool_score(r, "unseen", ORDER) == pytest.approx(0.5)
    r["image_dice"]["Kvasir"] = [1.0]
    with pytest.raises(ValueError, match="does not match"):
        pool_score(r, "all", ORDER)


def test_holm_adjusts_step_down_and_keeps_the_order():
    adjusted, k = holm([0.01, 0.04, 0.03, 0.5])
    assert k == [4, 2, 3, 1]
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.5])  # 0.08 raised to 0.09: monotone


def test_random_effects_uses_the_teacher_spread_only_when_teachers_differ():
    same = {"t0": [0.1, 0.3, 0.2], "t1": [0.12, 0.28, 0.2]}
    est, se, df, method = random_effects(same)
    units = [v for vs in same.values() for v in vs]
    assert df == 5 and "estimated as 0" in method
    assert se == pytest.approx(statistics.stdev(units) / math.sqrt(6))
    apart = {"t0": [0.10, 0.11, 0.12], "t1": [0.30, 0.31, 0.32]}
    est, se, df, method = random_effects(apart)
    assert est == pytest.approx(0.21) and df == 1 and "teacher means" in method
    assert se == pytest.approx(statistics.stdev([0.11, 0.31]) / math.sqrt(2))
    est, se, df, method = random_effects({"t0": [0.1, 0.2]})
    assert df == 1 and "not sampled" in method
    assert random_effects({"t0": [0.1]})[1] is None


def test_random_effects_with_one_seed_per_teacher_does_not_claim_a_zero_component():
    """One seed per teacher (|L| = 50 so far): teacher and seed variance are not separable,
    so the component is not "estimated as 0"; the interval is the teacher means' spread."""
    est, se, df, method = random_effects({"t0": [0.10], "t1": [0.30]})
    assert est == pytest.approx(0.20) and df == 1
    assert se == pytest.approx(statistics.stdev([0.10, 0.30]) / math.sqrt(2))
    assert "estimated as 0" not in method and "one seed per teacher" in method


def make_records(d_gain: float, c_gain: float, noise: float = 0.004) -> list[dict]:
    out = []
    for t in (0, 1):
        for k in range(3):
            seed, wiggle = 10 * t + k, noise * ((k * 7 + t * 3) % 5 - 2)
            out.append(record("A", t, seed, 0.60 + wiggle))
            out.append(record("C", t, seed, 0.60 + c_gain + wiggle * 0.5))
            out.append(record("B", t, seed, 0.70 + wiggle))
            for arm in ("D-kdas", "D-cwd", "D-pixel", "D-at"):
                out.append(record(arm, t, seed, 0.60 + d_gain + wiggle * 0.3))
            out.append(record("E", t, seed, 0.60 + wiggle * 0.9))
    return out


def test_a_clear_gain_reads_above_and_an_equal_one_equivalent():
    analysis = analyse(make_records(d_gain=0.05, c_gain=0.05), ORDER)
    primary = analysis["families"]["primary"]
    assert len(primary) == 16 and all(c["n_units"] == 6 for c in primary)
    vs_a = [c for c in primary if c["reference"] == "A"]
    assert {c["verdict"] for c in vs_a} == {"above"}
    assert all(c["p_holm"] >= c["p"] for c in primary)
    vs_c = [c for c in primary if c["reference"] == "C"]
    assert {c["verdict"] for c in vs_c} == {f"equivalent within ±{MARGIN}"}
    text = reading(analysis)
    assert "distillation helps when it brings images the labels lack" in text
    assert "the value is in the extra images, not in the soft targets" in text
    assert "the oracle B is +0.100 above A" in text


def test_noise_without_an_effect_is_not_measurable_and_never_above():
    analysis = analyse(make_records(d_gain=0.0, c_gain=0.0, noise=0.08), ORDER)
    verdicts = {c["verdict"] for c in analysis["families"]["primary"]}
    assert "above" not in verdicts and "below" not in verdicts
    assert "not measurable at this power" in verdicts
    assert "smallest detectable" in reading(analysis)
    within = next(line for line in reading(analysis).splitlines()
                  if line.startswith("- 562 distinct test images, inside D and against E"))
    assert "D-kdas − E not measurable at this power" in within
    assert "the transfer set matters" not in within  # a question, not a finding
    assert "does the transfer set matter?" in within


def test_the_figure_has_one_panel_per_label_budget_with_runs():
    from kdas_lite.viz import transfer_figure

    records = make_records(0.05, 0.05) + [
        {**r, "labels": 50} for r in make_records(0.02, 0.0) if r["seed"] < 10]
    fig = transfer_figure(analyse(records, ORDER))
    assert [ax.get_title() for ax in fig.axes] == ["|L| = 200", "|L| = 50"]
    with pytest.raises(ValueError, match="no arm"):
        transfer_figure({"families": {}, "context": []})


def _no_constant(name: str) -> float:
    raise ValueError(f"not strict JSON: {name}")


def test_contrasts_without_paired_runs_are_written_as_null_not_nan():
    import json

    analysis = analyse([r for r in make_records(0.05, 0.0) if r["arm"] == "A"], ORDER)
    text = json.dumps(analysis)
    strict = json.loads(text, parse_constant=_no_constant)  # no bare NaN anywhere
    primary = strict["families"]["primary"]
    assert {c["n_units"] for c in primary} == {0} and {c["estimate"] for c in primary} == {None}
    table = markdown(strict)  # the readers take the nulls
    assert "**primary**: no paired runs yet." in table and "| |L| |" not in table
    assert "**context** (B − A, C − A, E − A): no paired runs yet." in table
    assert "| 200 | 562 distinct test images | B − A | 6 |" in markdown(
        analyse(make_records(0.05, 0.0), ORDER))
    assert reading(strict) == "No student runs yet.\n"


def test_the_committed_summary_is_strict_json():
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "results" / "transfer_set.json"
    json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
