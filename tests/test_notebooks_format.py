"""The committed notebooks are well-formed, stripped, parameterised and lint-clean.

Fast checks only: nothing is executed here (scripts/run_notebooks.py executes them with
papermill, and nbval checks the cells marked ``# NBVAL_CHECK_OUTPUT``).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = [
    "01_teacher_training.ipynb",
    "02_attention_visualization.ipynb",
    "03_sgm_covariance_guidance.ipynb",
    "04_distillation.ipynb",
    "05_cross_dataset_evaluation.ipynb",
    "06_deploy_the_student.ipynb",
]
CHECK = "# NBVAL_CHECK_OUTPUT"
# every notebook declares these (run_notebooks.py passes them); 02-05 also the checkpoints,
# the students' `epochs` (01: `teacher_epochs`, the teacher trains longer)
COMMON_PARAMETERS = {"data_root", "use_synthetic", "run_root", "image_size",
                     "batch_size", "device", "seed", "synthetic_images", "synthetic_size",
                     "n_test_images", "drive", "scale"}


def _set_repository_script():
    spec = importlib.util.spec_from_file_location(
        "set_repository", NOTEBOOK_DIR.parent / "scripts" / "set_repository.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


SETTING = _set_repository_script().read_setting()  # pyproject.toml's [project.urls]


def _load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def _code(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_the_six_notebooks_exist_and_nothing_else() -> None:
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_valid_nbformat_with_python3_kernel(name: str) -> None:
    nb = _load(name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    ids = [cell.id for cell in nb.cells]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", NAMES)
def test_opens_with_badge_learning_goals_and_times(name: str) -> None:
    first = _load(name).cells[0]
    assert first.cell_type == "markdown"
    assert f"({SETTING.colab(name)})" in first.source, "badge naming the repository setting"
    assert "colab-badge.svg" in first.source
    for phrase in ("What you will learn", "Time needed", "CPU", "Colab GPU"):
        assert phrase in first.source


@pytest.mark.parametrize("name", NAMES)
def test_install_cell_comes_first_and_only_acts_on_colab(name: str) -> None:
    install = _code(_load(name))[0]
    assert SETTING.install in install.source and '"gdown"' in install.source
    assert "import google.colab" in install.source and "except ImportError" in install.source
    tree = ast.parse(install.source)
    pip_calls = [node for node in ast.walk(tree) if isinstance(node, ast.If)
                 and ast.unparse(node.test) == "IN_COLAB" and "pip" in ast.unparse(node)]
    assert pip_calls, "pip must run only under `if IN_COLAB:`"


@pytest.mark.parametrize("name", NAMES)
def test_exactly_one_parameters_cell_with_literal_values(name: str) -> None:
    nb = _load(name)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    assert _code(nb).index(tagged[0]) == 1, "the parameters follow the install cell"
    for statement in ast.parse(tagged[0].source).body:  # papermill overrides plain assignments
        assert isinstance(statement, ast.Assign), ast.unparse(statement)
        ast.literal_eval(statement.value)
    declared = set(papermill.inspect_notebook(str(NOTEBOOK_DIR / name)))
    assert declared >= COMMON_PARAMETERS
    if name.startswith("01"):
        assert {"teacher_epochs", "teacher_train_images"} <= declared
    else:
        assert {"teacher_checkpoint", "epochs"} <= declared


THIN = NAMES  # every notebook: no parameter overwritten, no code cell over 25 lines


def _assigned_names(source: str) -> set[str]:
    """Every name a cell binds: assignments, loop and comprehension targets, walrus."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign | ast.For
                                               | ast.comprehension | ast.NamedExpr) else [])
        found |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return found


@pytest.mark.parametrize("name", THIN)
def test_no_cell_overwrites_a_parameter(name: str) -> None:
    # a parameter holds what papermill (or the reader) set: 05 once reused `n_images` for the
    # number of scored images, so its best/worst figures showed every image of the test set
    declared = set(papermill.inspect_notebook(str(NOTEBOOK_DIR / name)))
    later = _code(_load(name))[2:]  # after the install and the parameters cells
    reused = {c.id: sorted(_assigned_names(c.source) & declared) for c in later}
    assert not {c: names for c, names in reused.items() if names}, reused


@pytest.mark.parametrize("name", THIN)
def test_no_code_cell_over_25_lines(name: str) -> None:
    # long code belongs in the library; the parameters cell is a list of settings
    long = {c.id: len(c.source.splitlines()) for c in _code(_load(name))
            if "parameters" not in c.metadata.get("tags", []) and len(c.source.splitlines()) > 25}
    assert not long, f"{name}: move these cells' code into kdas_lite: {long}"


@pytest.mark.parametrize("name", NAMES)
def test_outputs_stripped_except_checked_cells(name: str) -> None:
    nb = _load(name)
    checked = 0
    for cell in _code(nb):
        if cell.source.startswith(CHECK):
            checked += 1
            assert cell.outputs, f"{name}: a {CHECK} cell needs its expected output committed"
            assert all(out.output_type == "stream" for out in cell.outputs)
            # nbval only compares reference cells that have an execution count
            assert cell.execution_count == 1
        else:
            assert cell.outputs == [], f"{name}: outputs left in cell {cell.id}"
            assert cell.execution_count is None, f"{name}: execution count in cell {cell.id}"
        assert CHECK not in cell.source or cell.source.startswith(CHECK)
    assert "papermill" not in nb.metadata
    for cell in nb.cells:
        assert not {"execution", "papermill"} & set(cell.metadata), "run metadata left in"
    if name[:2] in {"01", "03", "04"}:
        assert checked >= 1


def test_code_cells_are_ruff_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", *(str(NOTEBOOK_DIR / n)
                                                                 for n in NAMES)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_notebooks_import_only_public_kdas_lite_names() -> None:
    for name in NAMES:
        for cell in _code(_load(name)):
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                        "kdas_lite"):
                    module = importlib.import_module(node.module)
                    public = set(getattr(module, "__all__", ()))
                    for alias in node.names:
                        if node.module == "kdas_lite" and importlib.util.find_spec(
                                f"kdas_lite.{alias.name}"):
                            continue  # a module of the library (``from kdas_lite import viz``)
                        assert alias.name in public, (
                            f"{name}: {node.module}.{alias.name} is not public API")


def test_readme_lists_every_notebook_and_names_the_repository_setting() -> None:
    readme = (NOTEBOOK_DIR / "README.md").read_text(encoding="utf-8")
    for name in NAMES:
        assert name in readme
    assert f"`{SETTING.slug}`" in readme


@pytest.mark.parametrize("name", NAMES)
def test_setup_cell_follows_the_parameters_and_names_its_notebook(name: str) -> None:
    setup = _code(_load(name))[2]
    assert f'course_setup("{name[:2]}", run_root=run_root, drive=drive' in setup.source
    assert "globals().update(setup.parameters)" in setup.source
    assert len(setup.source.splitlines()) <= 5


def _run_notebooks_script():
    spec = importlib.util.spec_from_file_location(
        "run_notebooks", NOTEBOOK_DIR.parent / "scripts" / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("params", ["smoke", "smoke-pvt", "cpu-lab"])
def test_run_notebooks_passes_only_declared_parameters(params: str, tmp_path: Path) -> None:
    script = _run_notebooks_script()
    values = script.parameters(params, "synthetic", tmp_path)
    declared = set().union(*(papermill.inspect_notebook(str(NOTEBOOK_DIR / n)) for n in NAMES))
    assert set(values) <= declared, "a parameter no notebook declares (typo?)"
    assert values["run_root"] == str(tmp_path) and values["use_synthetic"] is True
    assert [p.name for p in script.notebooks()] == NAMES


def test_update_checked_outputs_copies_only_checked_cells(tmp_path: Path) -> None:
    script = _run_notebooks_script()
    source = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(f"{CHECK}\nprint(1)"), nbformat.v4.new_code_cell("print(2)")])
    executed = nbformat.reads(nbformat.writes(source), as_version=4)  # same cell ids
    for cell, text in zip(executed.cells, ("1\n", "2\n"), strict=True):
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        cell.execution_count = 7
    nbformat.write(source, tmp_path / "source.ipynb")
    nbformat.write(executed, tmp_path / "executed.ipynb")
    assert script.update_checked_outputs(tmp_path / "executed.ipynb",
                                         tmp_path / "source.ipynb") == 1
    checked, plain = nbformat.read(tmp_path / "source.ipynb", as_version=4).cells
    assert [o.text for o in checked.outputs] == ["1\n"] and checked.execution_count == 1
    assert plain.outputs == [] and plain.execution_count is None


def test_rendered_pages_lose_machine_paths_progress_bars_and_network_maths(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(NOTEBOOK_DIR.parent / "scripts"))
    render = importlib.import_module("render_notebooks")
    repo, shared = render.REPO, render.REPO.parent / "shared" / "data"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("Eq. 4: $$S = P +\nP^\\top$$ and inline $\\alpha$."),
        nbformat.v4.new_code_cell(f"run_root = '{repo}/build/runs'"),
    ])
    nb.cells[1].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=f"data: {shared}\nrun {repo}\n"),
        nbformat.v4.new_output("display_data", data={
            render.WIDGET: {"model_id": "x"}, "text/plain": "  0%|          | 0/25"}),
        nbformat.v4.new_output("display_data", data={"text/markdown": f"`{repo}/x.csv`"}),
    ]
    render.readable(nb)
    markdown, code = nb.cells
    assert "$" not in markdown.source and markdown.source.count("<math") == 2
    assert 'display="block"' in markdown.source and "<msup>" in markdown.source
    assert code.source == "run_root = 'build/runs'"
    assert [o.output_type for o in code.outputs] == ["stream", "display_data"]  # no widget
    assert code.outputs[0].text == "data: ../shared/data\nrun .\n"
    assert code.outputs[1].data["text/markdown"] == "`x.csv`"
    page = "<head><!-- Load mathjax --><script src='cdn'></script>" \
           "<!-- End of mathjax configuration --></head>"
    assert render.MATHJAX.sub("", page) == "<head></head>"


@pytest.mark.parametrize("name", NAMES)
def test_colab_is_asked_for_a_t4_and_the_first_cell_says_how_to_check(name: str) -> None:
    import torch

    from kdas_lite.colab import DeviceInfo

    nb = _load(name)
    assert nb.metadata.accelerator == "GPU" and nb.metadata.colab.gpuType == "T4"
    first = nb.cells[0].source
    assert "*Runtime → Change runtime type* shows *T4 GPU*" in first
    t4 = DeviceInfo(torch.device("cuda"), "Tesla T4", (7, 5), 15.0, torch.float16).describe()
    quoted = first.split("setup cell's first line reads `")[1].split("…")[0].rstrip()
    assert t4.startswith(quoted), "the line the setup cell really prints on a T4"
    # a Colab student cannot open the repository's files: links go to GitHub, via the setting
    for doc in ("docs/notebooks/index.md", "notebooks/README.md"):
        assert f"[{doc}](https://github.com/{SETTING.slug}/blob/{SETTING.ref}/{doc})" in first
    assert "`docs/" not in first and "`notebooks/README.md`" not in first


@pytest.mark.parametrize("name", NAMES)
def test_the_parameter_cell_says_what_wins_on_a_gpu(name: str) -> None:
    nb = _load(name)
    cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    comment = cell.source.split("scale = None  #", 1)[1].split("\n\n", 1)[0]
    assert "on a GPU the colab-t4 set REPLACES the values below" in comment
    assert '"cpu-lab": the values below win everywhere' in comment


def _install_cell(name: str) -> str:
    return _code(_load(name))[0].source


@pytest.mark.parametrize("name", NAMES)
def test_a_repository_pip_cannot_install_stops_the_install_cell_in_one_line(
        name: str, monkeypatch) -> None:
    import types

    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    colab = types.ModuleType("google.colab")
    colab.output = types.SimpleNamespace(enable_custom_widget_manager=lambda: None)  # 02
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    asked = []
    stderr = ("  Running command git clone --filter=blob:none --quiet https://github.com/acme/x\n"
              "  fatal: could not read Username for 'https://github.com': No such device\n"
              "  error: subprocess-exited-with-error\n")

    def run(args, **kwargs):
        asked.append(args)
        return subprocess.CompletedProcess(args, 1, "", stderr)

    monkeypatch.setattr(subprocess, "run", run)
    with pytest.raises(SystemExit) as stopped:
        exec(_install_cell(name), {})
    message = str(stopped.value)
    assert "\n" not in message and SETTING.install in asked[0][-1]
    assert message.startswith(f"pip could not install git+https://github.com/{SETTING.slug}@"
                              f"{SETTING.ref} (fatal: could not read Username")
    assert "`python scripts/set_repository.py OWNER/NAME`" in message
    monkeypatch.setattr(subprocess, "run",
                        lambda args, **kw: subprocess.CompletedProcess(args, 0, "", ""))
    exec(_install_cell(name), {})  # installed: the cell says nothing and goes on


def test_04_labels_the_lab_tables_with_the_labs_own_labels() -> None:
    """A runtime with other counts (5 ETIS images) must not relabel the lab's 20-image column."""
    from kdas_lite import verdict_tables
    from kdas_lite.lab_data import lab_file
    from kdas_lite.lab_results import load_lab, set_labels

    lab = load_lab(lab_file("real_lab.json"))
    lab_label = set_labels(lab)
    assert lab_label["ETIS-LaribPolypDB"] == "ETIS-LaribPolypDB (20/196)"
    assert lab_label["CVC-300"] == "CVC-300 (inferred)"
    header = verdict_tables.lab_rows_table(lab).splitlines()[0]
    assert "ETIS-LaribPolypDB (20/196)" in header
    alone = [r["mDice"]["ETIS-LaribPolypDB"] for r in lab["rows"]["alone"]["runs"]][:1]
    lines = verdict_tables.live_lines(lab, {"student alone": alone, "KDAS": alone}, 0.5,
                               "ETIS-LaribPolypDB", "ETIS-LaribPolypDB (5/196)",
                               {"KDAS": "kdas"}.get)
    kdas = next(line for line in lines if line.startswith("- *KDAS*"))
    assert "lab on ETIS-LaribPolypDB (20/196)" in kdas and "(5/196)" not in kdas
    for cell in (c.source for c in _code(_load(NAMES[3]))):  # no lab column takes the runtime's
        if 'lab["test_sets"]' in cell or "lab_rows_table" in cell:
            assert "layout.status" not in cell, cell[:80]
