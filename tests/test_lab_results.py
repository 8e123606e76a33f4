"""kdas_lite.lab_results: t-intervals over seeds, the block bootstrap over test images, the
families (Holm within each) and the readings whose verdicts follow the adjusted p."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from kdas_lite.lab_results import (
    bootstrap_all_images,
    interval_table,
    load_lab,
    mechanism_effect,
    mechanism_reading,
    paired_against,
    paired_intervals,
    reading,
    same_students_alone,
    sign,
    sign_trend,
    sweep_intervals,
    sweep_reading,
    t_interval,
    t_quantile,
    takeaway,
    teacher_effect,
    teacher_strength_reading,
)
from kdas_lite.lab_stats import paired_test

REPO = Path(__file__).resolve().parents[1]


def test_t_quantile_table_and_interpolation() -> None:
    assert t_quantile(2) == 4.303 and t_quantile(4) == 2.776 and t_quantile(30) == 2.042
    assert 2.021 > t_quantile(50) > 2.000  # between the table's 40 and 60
    assert t_quantile(10_000) == pytest.approx(1.960, abs=1e-3)
    with pytest.raises(ValueError, match="≥ 1"):
        t_quantile(0)


def test_t_interval_by_hand() -> None:
    # 1, 2, 3: mean 2, sample sd 1, half width t_{0.975,2}·1/√3 = 4.303/√3.
    iv = t_interval([1.0, 2.0, 3.0])
    half = 4.303 / math.sqrt(3)
    assert (iv.mean, iv.n) == (2.0, 3)
    assert iv.lo == pytest.approx(2 - half) and iv.hi == pytest.approx(2 + half)
    assert not iv.excludes_zero and iv.format() == "+2.000 [-0.484, +4.484]"
    assert t_interval([4.0, 5.0, 6.0]).excludes_zero  # 5 ± 2.484
    single = t_interval([0.5])
    assert single.lo is None and not single.excludes_zero and single.format() == "+0.500"


def _lab(tmp_path: Path, deltas: dict[str, dict[str, list[float]]]) -> dict:
    rows = {"alone": {"label": "student alone", "runs": [], "delta_vs_alone": {}}}
    for row, per_set in deltas.items():
        rows[row] = {"label": row.upper(), "runs": [], "delta_vs_alone": {
            s: {"per_seed": {str(i): d for i, d in enumerate(v)}} for s, v in per_set.items()}}
    lab = {"test_sets": ["Kvasir", "ETIS-LaribPolypDB", "avg"], "rows": rows,
           "records": "lab_runs"}
    path = tmp_path / "real_lab.json"
    path.write_text(json.dumps(lab), encoding="utf-8")
    return load_lab(path)


def _record(folder: Path, row: str, seed: int, dice: dict[str, list[float]]) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{row}-s{seed}.json").write_text(json.dumps({"image_dice": dice}),
                                                encoding="utf-8")


def test_paired_intervals_and_reading_say_where_the_interval_excludes_zero(tmp_path) -> None:
    lab = _lab(tmp_path, {"good": {"Kvasir": [0.05, 0.06, 0.04], "avg": [0.1, -0.1, 0.05]},
                          "bad": {"Kvasir": [-0.07, -0.06, -0.08], "avg": [-0.15, -0.16, -0.14]}})
    good = paired_intervals(lab, "good")
    assert good["Kvasir"].excludes_zero and good["Kvasir"].mean == pytest.approx(0.05)
    assert not good["avg"].excludes_zero
    assert paired_intervals(lab, "alone") == {}
    text = reading(lab)
    # Family of 4 tests, by hand: p sorted 0.0015, 0.0067, 0.0128, 0.81 → Holm ×4, ×3, ×2, ×1:
    # 0.0059, 0.020, 0.026, 0.81 (each already ≥ the one before).
    assert "**GOOD** (3 seeds) vs the student alone: above on Kvasir; no measurable " \
           "difference (smallest detectable effect" in text and "on all distinct images" in text
    assert "**BAD** (3 seeds) vs the student alone: below on Kvasir, all distinct images" in text
    assert 'Holm within the family "lab" of 4 tests' in text
    table = interval_table(lab)
    assert "| GOOD | 3 | +0.050 [+0.025, +0.075]<br>p 0.01, Holm 0.03 |" in table
    assert "| BAD | 3 | -0.070 [-0.095, -0.045]<br>p 0.0067, Holm 0.02 |" in table
    with pytest.raises(KeyError, match="no row 'missing'"):
        paired_intervals(lab, "missing")


def test_bootstrap_constant_difference_has_a_zero_width_interval(tmp_path) -> None:
    lab = _lab(tmp_path, {"up": {"Kvasir": [0.1, 0.1]}})
    for seed in (0, 1):
        base = {"Kvasir": [0.2, 0.5, 0.7], "ETIS-LaribPolypDB": [0.0, 0.3]}
        _record(tmp_path / "lab_runs", "alone", seed, base)
        _record(tmp_path / "lab_runs", "up", seed, {k: [x + 0.1 for x in v]
                                                     for k, v in base.items()})
    iv = bootstrap_all_images(lab, "up", n_boot=200)
    assert iv is not None and iv.n == 5 and iv.method.startswith("block bootstrap")
    assert iv.mean == pytest.approx(0.1) and iv.lo == pytest.approx(0.1)
    assert iv.hi == pytest.approx(0.1)


def test_bootstrap_is_paired_by_image_and_stratified_by_set(tmp_path) -> None:
    lab = _lab(tmp_path, {"mix": {"Kvasir": [0.0]}})
    rng = np.random.default_rng(1)
    kvasir = rng.uniform(0, 1, 40)
    etis = rng.uniform(0, 1, 10)
    # The row is +0.2 on every Kvasir image and −0.2 on every ETIS image, identically on both
    # seeds: with the set sizes fixed, every resample has the same mean (40·0.2 − 10·0.2)/50.
    for seed in (0, 1):
        _record(tmp_path / "lab_runs", "alone", seed,
                {"Kvasir": kvasir.tolist(), "ETIS-LaribPolypDB": etis.tolist()})
        _record(tmp_path / "lab_runs", "mix", seed,
                {"Kvasir": (kvasir + 0.2).tolist(), "ETIS-LaribPolypDB": (etis - 0.2).tolist()})
    iv = bootstrap_all_images(lab, "mix", n_boot=300)
    assert iv.mean == pytest.approx(0.12) and iv.hi - iv.lo == pytest.approx(0.0, abs=1e-12)
    # Image-varying differences give a real interval around the mean.
    noise = rng.normal(0, 0.1, 40)
    _record(tmp_path / "lab_runs", "mix", 1,
            {"Kvasir": (kvasir + 0.2 + noise).tolist(), "ETIS-LaribPolypDB": (etis - 0.2).tolist()})
    iv = bootstrap_all_images(lab, "mix", n_boot=2000)
    assert iv.lo < iv.mean < iv.hi and 0.005 < iv.hi - iv.lo < 0.1
    assert bootstrap_all_images(lab, "mix", tmp_path / "elsewhere") is None


def test_reads_the_committed_lab_summary() -> None:
    lab = load_lab(REPO / "docs" / "results" / "real_lab.json")
    cwd = paired_intervals(lab, "cwd")
    assert {"Kvasir", "avg"} <= set(cwd) and cwd["avg"].n >= 3
    text = reading(lab)
    assert text.count("\n- ") == len([r for r in lab["rows"] if r not in ("alone", "teacher")])
    assert "CWD" in text and "Holm" in text
    # the committed records' provenance is unknown: they are read as earlier runs
    assert lab["provenance"]["status"] == "unknown" and lab["family"] == "lab (earlier runs)"
    assert lab["n_distinct_images"] == 562
    cell = lab["rows"]["cwd"]["delta_vs_alone"]["avg"]
    assert {"p", "p_holm", "ci95_t", "verdict", "family_size"} <= set(cell)
    assert cell["p_holm"] >= cell["p"]


def test_reading_of_a_single_seed_and_of_a_row_kept_from_earlier_runs(tmp_path) -> None:
    lab = _lab(tmp_path, {"new": {"Kvasir": [0.02], "avg": [-0.01]},
                          "old": {"Kvasir": [0.019, 0.02, 0.021]}})
    lab["rows"]["old"]["rerun"] = False
    text = reading(lab)
    assert "- **NEW** (1 seed): no test yet (Kvasir Δ +0.020 (p —); all distinct images " \
        "Δ -0.010 (p —))." in text
    assert "- **OLD — earlier runs, 2026-12-01** (3 seeds) vs the student alone: above on " \
           "Kvasir" in text


def test_load_lab_defaults_to_the_shipped_committed_lab(monkeypatch, tmp_path) -> None:
    from kdas_lite.lab_results import load_lab

    monkeypatch.chdir(tmp_path)  # any working directory
    lab = load_lab()
    repo = Path(__file__).resolve().parents[1]
    assert Path(lab["_path"]) == (repo / "docs" / "results" / "real_lab.json").resolve()
    assert "alone" in lab["rows"]


def _runs(values: dict[int, float], name: str = "avg") -> list[dict]:
    return [{"seed": seed, "mDice": {name: v}} for seed, v in values.items()]


def _mechanism(alone: dict, sgm: dict, **rows: dict) -> dict:
    """A mechanism summary with the lab schema: runs, and Δ vs the student alone per seed."""
    def entry(label: str, values: dict) -> dict:
        return {"label": label, "runs": _runs(values), "delta_vs_alone": {"avg": {
            "per_seed": {str(s): values[s] - alone[s] for s in values if s in alone}}}}
    doc = {"test_sets": ["avg"], "rows": {"alone": {"label": "student alone",
                                                     "runs": _runs(alone)},
                                           "sgm": entry("+ L_SGM", sgm)}}
    doc["rows"].update({row: entry(row, values) for row, values in rows.items()})
    return doc


def test_paired_against_pairs_by_seed_and_mechanism_effect_reads_both_intervals() -> None:
    mech = _mechanism({0: 0.40, 1: 0.42, 2: 0.41}, {0: 0.30, 1: 0.31, 2: 0.29},
                      **{"sgm-prob": {0: 0.401, 1: 0.43, 2: 0.40, 3: 0.9}})
    iv = paired_against(mech, "sgm-prob", "sgm")
    assert iv.n == 3  # seed 3 has no + L_SGM run to pair with
    assert iv.mean == pytest.approx((0.101 + 0.12 + 0.11) / 3)
    up, down, zero = t_interval([1.0, 1.1, 0.9]), t_interval([-1.0, -1.1, -0.9]), \
        t_interval([-1.0, 1.0, 0.1])
    assert (sign(up), sign(down), sign(zero), sign(None)) == (1, -1, 0, 0)
    # "removes" needs equivalence with the student alone (a PairedTest), not a straddling
    # interval: an interval that only fails to exclude 0 says "reduces"
    assert mechanism_effect(up, zero) == "reduces the harm"
    assert mechanism_effect(up, paired_test([0.001, -0.001, 0.0])) == "removes the harm"
    assert mechanism_effect(up, down) == "reduces the harm"
    assert mechanism_effect(zero, down) == "no measurable effect"
    assert mechanism_effect(down, down) == "makes it worse"


def test_mechanism_reading_names_the_property_that_removes_the_harm() -> None:
    alone = {0: 0.40, 1: 0.42, 2: 0.41}
    sgm = {0: 0.290, 1: 0.311, 2: 0.299}  # −0.110 ± 0.001: below after Holm
    mech = _mechanism(alone, sgm,
                      **{"sgm-prob": {0: 0.401, 1: 0.419, 2: 0.410},  # back to alone
                         "sgm-no-transpose": {0: 0.2905, 1: 0.3105, 2: 0.299},  # as + L_SGM
                         "sgm-teacher-std": {0: 0.345, 1: 0.3655, 2: 0.3545}})  # half way
    text = mechanism_reading(mech)
    lines = text.splitlines()
    assert 'Holm within the family "mechanism" of 7 tests' in lines[0]
    assert "-0.110 [" in lines[1] and lines[1].endswith(": below.")
    assert "sgm-prob** — changes the logit scale" in text and "**removes the harm**" in text
    assert "sgm-no-transpose** — changes the symmetric pairing" in text
    assert "**no measurable effect**" in text and "**reduces the harm**" in text
    assert "50% of + L_SGM's harm" in text  # the half-way row
    conclusion = text.split("**Conclusion**")[1]
    assert "changing the logit scale removes the harm" in conclusion
    assert "changing the teacher's per-image logit scale reduces it" in conclusion
    assert "1 intervention(s) not run yet" in conclusion  # sgm-equal-grad
    none = mechanism_reading(_mechanism(alone, sgm, **{"sgm-prob": sgm}))
    assert "no change measurably reduces the harm after the adjustment" in none
    no_harm = mechanism_reading(_mechanism(alone, alone))
    assert "no harm to explain" in no_harm
    # back to the student alone's mean but not shown equivalent to it: only "reduces"
    noisy = _mechanism(alone, {0: 0.30, 1: 0.35, 2: 0.29},
                       **{"sgm-prob": {0: 0.401, 1: 0.43, 2: 0.40}})
    assert "changing the logit scale measurably reduces the harm (not shown to remove it)" \
        in mechanism_reading(noisy)


def _sweep(deltas: dict[int, list[float]], alone: dict[int, list[float]]) -> dict:
    budgets = {}
    for epochs, values in deltas.items():
        budgets[str(epochs)] = {
            "alone": {"mDice": {"Kvasir": {str(s): v for s, v in enumerate(alone[epochs])}}},
            "cwd": {"delta_vs_alone": {"Kvasir": {"per_seed": {
                str(s): v for s, v in enumerate(values)}}}}}
    margin = 0.8 - float(np.mean(alone[max(deltas)]))
    return {"budgets": budgets, "labels": {"cwd": "CWD"},
            "teacher_check": {"teacher_kvasir": 0.8, "at_epochs": max(deltas),
                              "margin": margin, "clearly_ahead": margin >= 0.05}}


def test_sweep_reading_says_whether_a_methods_sign_changes_with_the_budget() -> None:
    alone = {6: [0.60, 0.61, 0.62], 12: [0.70, 0.70, 0.71], 24: [0.77, 0.78, 0.78]}
    flips = _sweep({6: [0.04, 0.05, 0.045], 12: [0.0, 0.02, -0.02],
                    24: [-0.03, -0.035, -0.04]}, alone)
    assert sorted(sweep_intervals(flips, "cwd", "Kvasir")) == [6, 12, 24]
    text = sweep_reading(flips, sets=("Kvasir",))
    assert "6 epochs Kvasir 0.610; 12 epochs Kvasir 0.703; 24 epochs Kvasir 0.777" in text
    assert "+0.023 over the student alone at 24 epochs, **not** clearly ahead" in text
    assert "**CWD** (Δ vs the student alone, 3 seeds" in text
    # the trend is a paired test of Δ(24) − Δ(6) per seed: −0.07, −0.085, −0.085
    assert "trend Δ(24) − Δ(6) -0.080 [-0.102, -0.058] (p 0.0039, Holm 0.0039): the effect " \
           "shrinks" in text
    assert "seeds above 0: 6 ep 3/3, 12 ep 1/3, 24 ep 0/3" in text
    assert 'Holm within the family "sweep" of 3 tests' in text
    assert sign_trend([1, 1, 1]) == "stays above"
    assert sign_trend([1, 0, 0]) == "above → indistinguishable → indistinguishable"
    assert sign_trend([]) == "not measured"


def test_takeaway_reads_the_lab_the_sweep_with_its_teacher_caveat_and_the_mechanism() -> None:
    lab = {"rows": {"alone": {"label": "alone", "runs": []},
                    "cwd": {"label": "CWD", "delta_vs_alone": {"avg": {
                        "per_seed": {"0": 0.10, "1": 0.11, "2": 0.09}}}}}}
    alone = {6: [0.60, 0.61, 0.62], 24: [0.77, 0.78, 0.78]}
    sweep = _sweep({6: [0.04, 0.05, 0.045], 24: [-0.03, -0.035, -0.04]}, alone)
    for rows in sweep["budgets"].values():  # the same Δ on all images as on Kvasir
        rows["cwd"]["delta_vs_alone"]["avg"] = rows["cwd"]["delta_vs_alone"]["Kvasir"]
    mech = _mechanism({0: 0.40, 1: 0.42, 2: 0.41}, {0: 0.30, 1: 0.31, 2: 0.29},
                      **{"sgm-prob": {0: 0.401, 1: 0.425, 2: 0.405}})
    text = takeaway(lab, sweep, mech)
    assert "CWD: above (+0.100 [+0.075, +0.125], p " in text
    assert "CWD on Kvasir -0.080 [-0.102, -0.058] (p 0.0039, Holm 0.0078): the effect shrinks" \
        in text  # two trends (Kvasir, all images) in the family
    assert "At 24 epochs the teacher is not clearly ahead" in text
    assert text.endswith("on all distinct images, changing the logit scale removes the harm: "
                         "that property of L_SGM causes it (3 intervention(s) not run yet).")
    no_harm = takeaway(lab, None, _mechanism({0: 0.4, 1: 0.4}, {0: 0.4, 1: 0.41}))
    assert no_harm.endswith("so there is no harm to explain there.")


def _teacher_sweep(teacher: float, cwd: dict[int, list[float]], alone: dict[int, list[float]]
                   ) -> dict:
    """A sweep's summary with per-seed mDice only (Kvasir and all images equal)."""
    def scores(values: list[float]) -> dict:
        per_seed = {str(s): v for s, v in enumerate(values)}
        return {"mDice": {"Kvasir": per_seed, "avg": per_seed}}
    budgets = {str(e): {"alone": scores(alone[e]), "cwd": scores(cwd[e])} for e in cwd}
    top = max(cwd)
    margin = teacher - float(np.mean(alone[top]))
    return {"budgets": budgets, "labels": {"cwd": "CWD"},
            "teacher_check": {"teacher_kvasir": teacher, "at_epochs": top, "margin": margin,
                              "clearly_ahead": margin >= 0.05}}


def test_teacher_strength_pairs_each_student_with_itself_from_the_other_teacher() -> None:
    alone = {6: [0.60, 0.61, 0.62], 24: [0.77, 0.78, 0.78]}
    strong = _teacher_sweep(0.88, {6: [0.70, 0.72, 0.71], 24: [0.80, 0.76, 0.78]}, alone)
    weak = _teacher_sweep(0.82, {6: [0.64, 0.65, 0.66], 24: [0.78, 0.78, 0.78]}, alone)
    effect = teacher_effect(strong, weak, "cwd", "avg")
    assert sorted(effect) == [6, 24]
    assert effect[6].mean == pytest.approx(0.06) and effect[6].n == 3
    assert effect[6].lo == pytest.approx(0.06 - 4.303 * 0.01 / 3 ** 0.5)
    assert effect[24].mean == pytest.approx(0.0)  # +0.02, −0.02, 0: not distinguishable
    assert same_students_alone(strong, weak)
    text = teacher_strength_reading(strong, weak, sets=("avg",))
    assert "stronger 0.880 (+0.103 over the student alone at 24 epochs); weaker 0.820" in text
    assert "the same runs in both sweeps" in text
    assert "6 ep +0.060 [+0.035, +0.085] (p 0.0091, Holm 0.04; better), 24 ep +0.000" in text
    assert text.endswith("no measurable difference (smallest detectable effect 0.115)).")
    other_alone = _teacher_sweep(0.82, {6: [0.64, 0.65, 0.66], 24: [0.78, 0.78, 0.78]},
                                 {6: [0.5, 0.5, 0.5], 24: [0.7, 0.7, 0.7]})
    assert not same_students_alone(strong, other_alone)
    assert "**not** the same runs" in teacher_strength_reading(strong, other_alone)
    lab = {"rows": {"alone": {"label": "alone", "runs": []}}}
    said = takeaway(lab, strong, None, weak)
    assert ("**A stronger teacher** (Kvasir 0.880 instead of 0.820), each student against "
            "itself distilled from the weaker one, on all distinct images (Holm within the "
            "comparison): CWD: better at 6 epochs, no measurable difference at 24 epochs.") \
        in said
    alone3 = {**alone, 12: [0.70, 0.70, 0.70]}
    strong3 = _teacher_sweep(0.88, {6: [0.64, 0.65, 0.66], 12: [0.70, 0.70, 0.70],
                                    24: [0.78, 0.78, 0.78]}, alone3)
    weak3 = _teacher_sweep(0.82, {6: [0.64, 0.66, 0.65], 12: [0.71, 0.69, 0.70],
                                  24: [0.78, 0.79, 0.77]}, alone3)
    assert "CWD: no measurable difference at 6, 12 and 24 epochs." in takeaway(
        lab, strong3, None, weak3)


def test_bootstrap_pools_the_distinct_images_in_frame_order(tmp_path) -> None:
    lab = _lab(tmp_path, {"up": {"Kvasir": [0.1, 0.1]}})
    colondb = [0.1 * k for k in range(30)]
    for seed in (0, 1):
        _record(tmp_path / "lab_runs", "alone", seed,
                {"CVC-ColonDB": [0.0] * 30, "CVC-300": [0.0] * 10})
        _record(tmp_path / "lab_runs", "up", seed,
                {"CVC-ColonDB": colondb, "CVC-300": [9.0] * 10})  # a duplicate set: ignored
    iv = bootstrap_all_images(lab, "up", n_boot=500)
    assert iv.n == 30 and iv.mean == pytest.approx(np.mean(colondb))
    # blocks of consecutive frames of a trending series are wider than single images
    iid = bootstrap_all_images(lab, "up", n_boot=500, block=1)
    assert iv.hi - iv.lo > iid.hi - iid.lo
