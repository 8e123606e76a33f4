"""The transfer set in notebook 04's verdict box, takeaway and section (kdas_lite.verdict,
kdas_lite.verdict_tables): read in kdas_lite.transfer_results' own format, every number from
the summary."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from kdas_lite import verdict, verdict_tables
from kdas_lite.lab_results import load_lab
from kdas_lite.lab_stats import format_interval, format_p
from kdas_lite.transfer_results import analyse, figure_ready

REPO = Path(__file__).resolve().parents[1]
SETS = {"Kvasir": 2, "CVC-ClinicDB": 2, "CVC-ColonDB": 3, "CVC-300": 1, "ETIS-LaribPolypDB": 1}
ORDER = {name: [f"{name}-{i}" for i in range(n)] for name, n in SETS.items()}
#: each arm's mean Dice: D-kdas clearly above A and C, D-cwd level with A
LEVEL = {"A": 0.60, "B": 0.70, "C": 0.60, "D-kdas": 0.66, "D-cwd": 0.60, "D-pixel": 0.60,
         "D-at": 0.60, "E": 0.60}


def _record(arm: str, teacher: int, seed: int, level: float) -> dict:
    return {"arm": arm, "labels": 200, "teacher": teacher, "seed": seed,
            "image_dice": {name: [level] * n for name, n in SETS.items()}}


def _teacher(teacher: int, kvasir: float) -> dict:
    return {**_record("teacher", teacher, teacher, 0.7), "teacher_sha256": "0" * 64,
            "best_epoch": 3, "table": {"datasets": {"Kvasir": {"meanDic": kvasir}}}}


def full_summary() -> dict:
    """A complete (SYNTHETIC) summary: two teachers, three seeds each, every arm at |L| = 200."""
    noise = random.Random(0)
    records = [_teacher(0, 0.811), _teacher(1, 0.822)]
    for t in (0, 1):
        for k in range(3):
            for arm, level in LEVEL.items():
                records.append(_record(arm, t, 10 * t + k, level + noise.gauss(0, 0.005)))
    return {**analyse(records, ORDER), "partial": False, "missing": [], "steps": 600,
            "split_file": "kdas_lite/data/splits/transfer_set.json",
            "split_counts": {"T": {"Kvasir-SEG": 4}, "U": {"Kvasir-SEG": 3}}}


def format_interval_holm(c: dict) -> str:
    """The estimate and the interval at the contrast's Holm step level (not the raw 95 %)."""
    return format_interval(c["estimate"], *c["ci_holm"])


POOLS = {"all": "562 distinct test images", "unseen": "unseen family"}


def _box(transfer: dict | None) -> str:
    return verdict.verdict_box(load_lab(), None, None, None, transfer).split("**Transfer set**")[1]


def _line(box: str, head: str) -> str:
    return next(line for line in box.splitlines() if head in line)


def test_no_file_says_not_yet_run(tmp_path) -> None:
    assert verdict.load_transfer(tmp_path / "transfer_set.json") is None
    box = _box(None)
    assert "not yet run" in box and "too few runs" not in box


def test_the_committed_partial_summary_says_partial_and_too_few_runs() -> None:
    committed = json.loads((REPO / "docs" / "results" / "transfer_set.json")
                           .read_text(encoding="utf-8"))
    transfer = verdict.load_transfer()  # the shipped link, the same file
    assert transfer is not None and transfer["missing"] == committed["missing"]
    box = _box(transfer)
    teachers = [f"{name} (Kvasir {t['kvasir_mDice']:.3f})"
                for name, t in sorted(committed["teachers"].items())]
    assert " and ".join(teachers) in box
    primary = committed["families"]["primary"]
    if committed["partial"]:
        assert f"{len(committed['missing'])} of the " in _line(box, "**PARTIAL**")
    for c in primary:
        line = _line(box, f"*D − {c['reference']}* on the {POOLS[c['pool']]}")
        if c["n_units"] < 2:
            assert c["arm"] in line.split("too few runs")[0]
    if all(c["n_units"] < 2 for c in primary):
        assert ": above" not in box and ": below" not in box


def test_a_full_summary_says_above_with_the_holm_interval_only_where_it_holds(tmp_path) -> None:
    doc = full_summary()
    path = tmp_path / "transfer_set.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    transfer = verdict.load_transfer(path)
    box = _box(transfer)
    assert "PARTIAL" not in box and "too few runs" not in box
    assert "t0 (Kvasir 0.811) and t1 (Kvasir 0.822)" in box
    by_key = {(c["pool"], c["arm"], c["reference"]): c for c in doc["families"]["primary"]}
    for (pool, arm, ref), c in by_key.items():
        line = _line(box, f"*D − {ref}* on the {POOLS[pool]}")
        said = line.split(f"{arm} ", 1)[1].split("; ")[0]
        assert said.startswith(format_interval_holm(c)), said  # the Holm-level interval
        assert f"Holm {format_p(c['p_holm'])})" in said
        word = said.rsplit("): ", 1)[1]
        if c["p_holm"] < 0.05:
            assert word == ("above" if c["estimate"] > 0 else "below")
        else:
            assert "above" not in word and "below" not in word
    clear = by_key[("all", "D-kdas", "A")]
    assert clear["p_holm"] < 0.05  # the design: one arm clearly above
    assert clear["ci_holm"][0] < clear["ci95"][0]  # the Holm level (wider), not the raw 95 %
    assert by_key[("all", "D-cwd", "A")]["p_holm"] >= 0.05
    large = by_key[("all", "D-kdas", "C")]  # a large estimate the teachers' spread does not carry
    assert large["estimate"] > 0.05 and large["p_holm"] >= 0.05
    assert "D-kdas " + format_interval_holm(large) in _line(box, "*D − C* on the 562")
    takeaway = verdict.transfer_takeaway(transfer)
    assert f"D-kdas {format_interval_holm(clear)}: above" in takeaway
    assert "D-cwd above" not in takeaway and "Partial" not in takeaway
    assert takeaway in verdict.key_results(load_lab(), transfer=transfer)


def test_a_single_run_is_too_few_even_with_an_estimate() -> None:
    contrast = {"n_units": 1, "p_holm": None, "verdict": "too few runs", "estimate": 0.3}
    assert verdict.transfer_word(contrast) == "too few runs"
    assert verdict.transfer_word({**contrast, "n_units": 0, "estimate": None}) == "too few runs"


def test_old_files_with_bare_nan_are_read_and_other_files_refused(tmp_path) -> None:
    doc = full_summary()
    doc["families"]["primary"][0].update(estimate=float("nan"), n_units=0, p=None, p_holm=None)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc), encoding="utf-8")  # writes a bare NaN
    assert "NaN" in path.read_text(encoding="utf-8")
    assert verdict.load_transfer(path)["families"]["primary"][0]["estimate"] is None
    lab_like = tmp_path / "lab.json"
    lab_like.write_text(json.dumps({"rows": {}}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"lab\.json is not a transfer-set summary.*--report"):
        verdict.load_transfer(lab_like)


def test_the_notebook_reading_says_what_has_run() -> None:
    assert "not been run" in verdict_tables.transfer_reading(None)
    committed = verdict.load_transfer()
    text = verdict_tables.transfer_reading(committed)
    assert "`kdas_lite/data/splits/transfer_set.json`" in text
    assert f"U {sum(committed['split_counts']['U'].values())}" in text
    assert ("No paired contrast yet" in text) == (not figure_ready(committed))
    full = verdict_tables.transfer_reading(full_summary())
    assert "No paired contrast yet" not in full and "| D-kdas − A |" in full
