"""The experiment scripts' record writer under the documented use: two processes side by side
rewriting the same summary JSON (experiments/transfer_set.py, one process per teacher)."""

from __future__ import annotations

import json
import multiprocessing
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from lab_experiment import save_json


def _write_many(path: str, writer: int, n: int) -> None:
    for i in range(n):
        save_json(Path(path), {"writer": writer, "i": i, "pad": "x" * 20_000})


def test_two_processes_rewriting_one_json_never_fail_and_leave_a_whole_file(tmp_path):
    path = tmp_path / "summary.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(str(path), w, 300)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]  # the old shared tmp name raised here
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["i"] == 299  # the last replace is some writer's last write
    assert len(doc["pad"]) == 20_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no tmp left
