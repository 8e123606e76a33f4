"""One run renders the course, and its pages cannot disagree (issue 27, items 1 and 2).

- The facts file (:mod:`kdas_lite.facts`): what the library records while a notebook states
  facts about a checkpoint, and :func:`~kdas_lite.facts.disagreements` on a planted one.
- The committed pages (``docs/notebooks/``): one run id on every page, the same as their
  ``facts.json`` and ``index.md``, and no checkpoint fact stated two ways.
- ``scripts/render_notebooks.py``: an empty run folder or nothing, all pages from one run,
  solutions collapsed, first-run times and reuse in the index.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import nbformat
import pytest
import torch
from torch import nn

from kdas_lite import facts
from kdas_lite.checkpoint_files import save_checkpoint
from kdas_lite.colab import course_setup
from kdas_lite.walkthrough import describe_checkpoint

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "notebooks"


@pytest.fixture
def course_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A course run's environment, as scripts/run_notebooks.py gives every kernel."""
    path = facts.new_facts(tmp_path / "runs" / "facts.json", "2026-12-03-abc1234-0f0f")
    monkeypatch.setenv(facts.RUN_ID_ENV, "2026-12-03-abc1234-0f0f")
    monkeypatch.setenv(facts.FACTS_ENV, str(path))
    return path


@pytest.fixture
def render(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    return importlib.import_module("render_notebooks")


def _text(page: Path) -> str:
    return re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# The facts file
# ---------------------------------------------------------------------------------------------
def test_weights_sha256_is_the_same_in_memory_and_from_the_file(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    save_checkpoint({"model": model.state_dict()}, tmp_path / "best.pth")
    from_file = torch.load(tmp_path / "best.pth", weights_only=True)["model"]
    assert facts.weights_sha256(model) == facts.weights_sha256(from_file)
    with torch.no_grad():
        model.bias[0] += 1e-3
    assert facts.weights_sha256(model) != facts.weights_sha256(from_file)


def test_the_setup_cell_prints_the_run_id_only_in_a_course_run(
        course_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    course_setup("02", run_root=course_run.parent, drive=False, device="cpu")
    assert facts.page_run_ids(capsys.readouterr().out) == {"2026-12-03-abc1234-0f0f"}
    monkeypatch.delenv(facts.RUN_ID_ENV)
    course_setup("02", run_root=course_run.parent, drive=False, device="cpu")
    assert "run id" not in capsys.readouterr().out


def test_describe_checkpoint_records_what_it_states_per_notebook(course_run: Path) -> None:
    model = nn.Linear(3, 2)
    path = course_run.parent / "teacher" / "best.pth"
    path.parent.mkdir()
    save_checkpoint({"role": "teacher", "model": model.state_dict(), "epoch": 7,
                     "val_dice": 0.8123, "train_config": {"epochs": 15, "image_size": 128,
                                                          "teacher_encoder": "lite2"}}, path)
    for notebook in ("02", "05"):
        facts.begin(notebook)
        line = describe_checkpoint(path)
    assert "15 epochs" in line and "128 px" in line and "val Dice 0.812" in line
    entry = facts.load_facts(course_run)["checkpoints"][facts.weights_sha256(model)]
    assert entry["files"] == ["teacher/best.pth"] and entry["role"] == "teacher"
    assert entry["facts"] == {"epochs": {"02": 15, "05": 15}, "image size": {"02": 128, "05": 128},
                              "best epoch": {"02": 7, "05": 7},
                              "validation Dice": {"02": 0.8123, "05": 0.8123}}
    assert facts.disagreements(facts.load_facts(course_run)) == []


def test_nothing_is_recorded_outside_a_course_run(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(facts.FACTS_ENV, raising=False)
    facts.record(nn.Linear(1, 1), {"epochs": 3})
    facts.record_run(tmp_path, 3)
    assert list(tmp_path.iterdir()) == []


def test_a_planted_disagreement_is_found_and_float_noise_is_not(course_run: Path) -> None:
    teacher, student = nn.Linear(3, 2), nn.Linear(3, 1)
    score = "test Kvasir meanDic (128 px, opencv)"
    facts.begin("04")
    facts.record(teacher, {score: 0.822, "epochs": 15}, role="teacher")
    facts.record(student, {"validation Dice": 0.5541}, role="student")
    facts.begin("05")
    facts.record(teacher, {score: 0.814, "epochs": 15})
    facts.record(student, {"validation Dice": 0.5541 + 1e-6})  # float noise: the same value
    found = facts.disagreements(facts.load_facts(course_run))
    assert len(found) == 1
    assert "teacher" in found[0] and score in found[0]
    assert "04 says 0.822, 05 says 0.814" in found[0]


def test_a_planted_run_id_mismatch_is_found() -> None:
    pages = {"01": "run id: 2026-12-03-aaa-1\n", "02": "run id: 2026-12-03-aaa-1\n",
             "04": "run id: 2026-12-02-bbb-2\n", "05": "no setup output"}
    ids = {name: facts.page_run_ids(text) for name, text in pages.items()}
    assert [name for name, found in ids.items() if found != {"2026-12-03-aaa-1"}] == ["04", "05"]


def test_fit_records_whether_a_run_was_trained_or_reused(course_run: Path, tmp_path: Path) -> None:
    from training_helpers import tiny_config, tiny_dataset

    from kdas_lite.train import train_teacher

    config = tiny_config(tiny_dataset(tmp_path), output_dir=course_run.parent)
    facts.begin("01")
    first = train_teacher(config, resume=True, progress=False)
    facts.begin("04")
    again = train_teacher(config, resume=True, progress=False)
    data = facts.load_facts(course_run)
    assert data["notebooks"] == {"01": {"runs": [{"run": "teacher", "trained_epochs": 1}]},
                                 "04": {"runs": [{"run": "teacher", "trained_epochs": 0}]}}
    entry = data["checkpoints"][facts.weights_sha256(first.model)]
    assert entry["facts"]["validation Dice"] == {"01": first.best_val_dice,
                                                 "04": again.best_val_dice}


# ---------------------------------------------------------------------------------------------
# The committed pages
# ---------------------------------------------------------------------------------------------
def test_the_committed_pages_show_one_run_id_that_of_their_facts_and_index() -> None:
    committed = facts.load_facts(DOCS / "facts.json")
    ids = {page.name: facts.page_run_ids(_text(page)) for page in sorted(DOCS.glob("*.html"))}
    assert ids and all(found == {committed["run_id"]} for found in ids.values()), ids
    assert f"Run id `{committed['run_id']}`" in (DOCS / "index.md").read_text(encoding="utf-8")


def test_the_committed_pages_agree_about_every_checkpoint() -> None:
    committed = facts.load_facts(DOCS / "facts.json")
    assert committed["checkpoints"], "the facts file records the pages' checkpoints"
    assert facts.disagreements(committed) == []


# ---------------------------------------------------------------------------------------------
# The one command
# ---------------------------------------------------------------------------------------------
def test_a_non_empty_run_folder_is_refused_and_kept(render, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "mine.txt").write_text("not the renderer's")
    assert render.main(["--smoke", "--run", str(tmp_path)]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_no_option_renders_a_subset_of_pages_or_another_folder(render) -> None:
    for option in ("--only", "--executed", "--output"):
        with pytest.raises(SystemExit):
            render.main([option, "04"])


def test_run_notebooks_empties_only_a_folder_it_made(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    script = importlib.import_module("run_notebooks")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "best.pth").write_text("x")
    with pytest.raises(SystemExit, match=r"not made by run_notebooks\.py"):
        script.empty_run_folder(tmp_path / "theirs")
    assert (tmp_path / "theirs" / "best.pth").is_file()
    script.empty_run_folder(tmp_path / "ours")
    (tmp_path / "ours" / "old.pth").write_text("x")
    script.empty_run_folder(tmp_path / "ours")
    assert [p.name for p in (tmp_path / "ours").iterdir()] == [script.MARKER]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d-\w+-[0-9a-f]{4}", script.new_run_id())


def _fake_run(render, folder: Path, run_id: str, printed: dict[str, str]) -> Path:
    """A finished run folder with tiny executed notebooks named as the real ones."""
    (folder / "executed").mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({
        "run_id": run_id, "params": "smoke", "git": {"head": "abc1234", "dirty": False},
        "date": "2026-12-03 15:00", "machine": "x86_64"}))
    path = facts.new_facts(folder / "runs" / "facts.json", run_id)
    data = facts.load_facts(path)
    data["notebooks"] = {"02": {"runs": [{"run": "kdas/student", "trained_epochs": 1}]},
                         "04": {"runs": [{"run": "kdas/student", "trained_epochs": 0},
                                         {"run": "cwd/student", "trained_epochs": 1}]}}
    path.write_text(json.dumps(data))
    for source in render.run_notebooks.notebooks():
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_code_cell("setup = course_setup(...)"),
            nbformat.v4.new_code_cell("# Solution to exercise 1\nprint(2)",
                                      metadata={"tags": ["solution"]})])
        nb.cells[0].outputs = [nbformat.v4.new_output(
            "stream", name="stdout", text=f"run id: {printed.get(source.name[:2], run_id)}\n")]
        nb.metadata["papermill"] = {"duration": 60.0 * int(source.name[:2]),
                                    "parameters": {"use_synthetic": True}}
        nbformat.write(nb, folder / "executed" / source.name)
    return folder


def test_all_pages_of_one_run_are_rendered_together(render, tmp_path: Path) -> None:
    run = _fake_run(render, tmp_path / "run", "2026-12-03-abc1234-0f0f", {})
    assert render.publish(run, tmp_path / "pages") == 0
    names = [p.stem for p in render.run_notebooks.notebooks()]
    pages = {p.stem: p for p in (tmp_path / "pages").glob("*.html")}
    assert sorted(pages) == names
    for page in pages.values():
        html = page.read_text(encoding="utf-8")
        assert facts.page_run_ids(_text(page)) == {"2026-12-03-abc1234-0f0f"}
        assert re.search(r"<details class=\"kdas-solution\"><summary>Solution[^<]*</summary>\s*"
                         r"<div class=\"jp-Cell jp-CodeCell[^\"]*celltag_solution", html)
    index = (tmp_path / "pages" / "index.md").read_text(encoding="utf-8")
    assert "Run id `2026-12-03-abc1234-0f0f`" in index
    row04 = next(line for line in index.splitlines() if line.startswith("| [04_"))
    assert "4.0 min" in row04 and "reuses kdas/student (trained by 02 in this run" in row04
    total = sum(range(1, len(names) + 1))
    assert f"| **total** | **{total:.1f} min** | the lab's time" in index
    assert json.loads((tmp_path / "pages" / "facts.json").read_text())["run_id"] == \
        "2026-12-03-abc1234-0f0f"


def test_a_page_of_another_run_stops_the_rendering(render, tmp_path: Path) -> None:
    run = _fake_run(render, tmp_path / "run", "2026-12-03-abc1234-0f0f",
                    {"04": "2026-12-02-fff0000-1111"})
    with pytest.raises(SystemExit, match="not this run's notebook"):
        render.publish(run, tmp_path / "pages")
    assert not (tmp_path / "pages").exists()


def test_a_reused_run_from_before_the_run_is_never_the_lab_time(render) -> None:
    notes = render.reuse_notes({"notebooks": {
        "04": {"runs": [{"run": "kdas/student", "trained_epochs": 0}]}}})
    assert notes == {"04": "reuses kdas/student (from before this run: not a lab time)"}
