"""Give every committed run record its provenance: training and validation image ids, the
teacher's checksum and the environment, or say that they are unknown.

The per-run records under ``docs/results/`` were written before the run code recorded its
image ids and library versions (``experiments/real_lab.py`` does since 2026-12-03). This script
adds, to each record that lacks them and without changing any value already there:

- ``image_ids``: the stems of its training and validation images, recomputed from its own
  config and the data with the code that chose them
  (:func:`kdas_lite.training_data.training_split`); a record that already names its ids is
  checked against them (a difference stops the script);
- ``teacher_sha256`` (distilled rows): ``null`` where the run did not record it (the teacher
  record of a folder gets the checksum all its distilled records name, when they agree);
- ``environment``: ``null`` where the run did not record it, with ``environment_evidence``
  saying what is known instead: which folders' students alone give equal per-image Dice (the
  same environment, versions unrecorded), and what a re-run here gave (``--rerun``).

Usage (from the repository root, the real data under KDAS_DATA)::

    .venv/bin/python experiments/provenance.py \\
        --rerun runs/sweep-check/records/e6/alone-s0.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lab_experiment import save_json

from kdas_lite.config import TrainConfig
from kdas_lite.data import find_shared_data
from kdas_lite.training_data import training_split

RESULTS = Path("docs/results")
#: the folders whose records predate recorded provenance, and the student-alone folder of each
#: that the environment comparison uses
FOLDERS = {"lab_runs": "lab_runs", "mechanism_runs": "mechanism_runs",
           "budget_runs": "budget_runs/e6", "budget_runs_lab_teacher": "budget_runs_lab_teacher/e6"}
SEEDS = (0, 1, 2)


def records_of(folder: Path) -> list[Path]:
    """Every run record under ``folder`` (``test_images.json`` is not one)."""
    return sorted(p for p in folder.rglob("*.json") if p.name != "test_images.json")


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def image_ids(record: dict[str, Any], data_root: Path) -> dict[str, list[str]]:
    """The record's training and validation image stems from its config and the data."""
    config = TrainConfig.from_dict({**record["config"], "data_root": str(data_root),
                                    "output_dir": None})
    return training_split(config)


def same_alone(a: str, b: str) -> bool:
    """True when the students alone of seeds 0–2 in the two folders have equal per-image Dice."""
    def dice(folder: str, seed: int) -> Any:
        path = RESULTS / folder / f"alone-s{seed}.json"
        return load(path)["image_dice"] if path.exists() else None
    return all(dice(a, s) is not None and dice(a, s) == dice(b, s) for s in SEEDS)


def evidence(folder: str, rerun: Path | None) -> str:
    """What is known about the environment of ``folder``'s records, from the records."""
    shared = [f for f in FOLDERS if f != folder and same_alone(FOLDERS[folder], FOLDERS[f])]
    text = "library versions not recorded"
    if shared:
        text += ("; the same environment as " + ", ".join(f"docs/results/{f}" for f in shared)
                 + " (the students alone of seeds 0-2 give equal per-image Dice)")
    else:
        text += "; its students alone match no other folder's (another environment)"
    if rerun is not None and rerun.exists():
        again = load(rerun)
        target = RESULTS / "budget_runs/e6/alone-s0.json"
        equal = again["image_dice"] == load(target)["image_dice"]
        env = ", ".join(f"{k} {v}" for k, v in (again.get("environment") or {}).items())
        if folder == "budget_runs" or "budget_runs" in shared:
            text += (f"; a re-run of {target.as_posix()} on 2026-12-03 ({env}) gave "
                     + ("equal per-image Dice: verified by re-run" if equal else
                        "other per-image Dice: not that environment"))
    return text


def backfill(path: Path, folder: str, data_root: Path, teacher_sha: str | None,
             note: str) -> bool:
    """Add the missing provenance fields to one record; True when it changed."""
    record = load(path)
    added: dict[str, Any] = {}
    ids = image_ids(record, data_root)
    if "image_ids" in record:
        if record["image_ids"] != ids:
            sys.exit(f"{path}: its image ids differ from those its config chooses now "
                     "(training_split): the data or the split code changed; do not pair it")
    else:
        added["image_ids"] = ids
    distilled = record["row"] != "teacher" and not record["row"].startswith("alone")
    if distilled and "teacher_sha256" not in record:
        added["teacher_sha256"] = None
    if record["row"] == "teacher" and record.get("teacher_sha256") is None and teacher_sha:
        added["teacher_sha256"] = teacher_sha
        added["teacher_sha256_from"] = ("the checksum every distilled record of "
                                        f"docs/results/{folder} names")
    elif record["row"] == "teacher" and "teacher_sha256" not in record:
        added["teacher_sha256"] = None
    if "environment" not in record:
        added.update(environment=None, environment_evidence=note)
    if added:
        save_json(path, {**record, **added})
    return bool(added)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rerun", type=Path, default=None,
                        help="a scratch re-run of budget_runs/e6/alone-s0 in this environment")
    args = parser.parse_args(argv)
    data_root = find_shared_data()
    if data_root is None:
        sys.exit("provenance.py: no real PraNet data: set KDAS_DATA to its root")
    for folder in FOLDERS:
        paths = records_of(RESULTS / folder)
        shas = {load(p).get("teacher_sha256") for p in paths
                if load(p)["row"] not in ("teacher",) and "teacher_sha256" in load(p)}
        teacher_sha = next(iter(shas)) if len(shas) == 1 else None
        note = evidence(folder, args.rerun)
        changed = sum(backfill(p, folder, data_root, teacher_sha, note) for p in paths)
        print(f"{folder}: {changed} of {len(paths)} records given their provenance; "
              f"environment: {note}")


if __name__ == "__main__":
    main()
