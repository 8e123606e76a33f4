"""The package installs, its metadata agrees with environment.yml, and the README example runs."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

import kdas_lite

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")  # standard library from Python 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in ("dev", "offline-weights"):
        reqs += project["optional-dependencies"][extra]
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment_pip_requirements() -> dict[str, str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = []
    for line in lines[start + 1:]:
        item = line.strip()
        if item.startswith("#") or not item:
            continue
        if not item.startswith("- "):
            break
        reqs.append(item[2:].strip())
    return {_name(r): r.replace(" ", "") for r in reqs if not r.startswith("-e")}


def test_environment_yml_lists_exactly_the_pyproject_requirements() -> None:
    assert _environment_pip_requirements() == _pyproject_requirements()


def test_version_is_exposed_and_matches_the_installed_metadata() -> None:
    from importlib.metadata import version

    assert re.fullmatch(r"\d+\.\d+\.\d+", kdas_lite.__version__)
    assert version("kdas-lite") == kdas_lite.__version__


def test_version_one_liner_from_the_readme() -> None:
    out = subprocess.run([sys.executable, "-c", "import kdas_lite; print(kdas_lite.__version__)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == kdas_lite.__version__


def _readme_section_code(title: str) -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"## {title}", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, f"no python block under '## {title}'"
    return match.group(1)


@pytest.mark.slow
def test_readme_library_at_a_glance_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    code = _readme_section_code("Library at a glance")
    assert len(code.strip().splitlines()) <= 12
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    for term in ("loss", "seg", "at", "sgm"):
        assert f"'{term}'" in printed


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"Run the tests.*?```bash\n(.*?)\n```", readme, flags=re.S)
    assert match, "README must give the test command in a bash block after 'Run the tests'"
    command = match.group(1).strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_the_committed_lab_ships_as_links_to_docs_results() -> None:
    from kdas_lite.errors import DataError
    from kdas_lite.lab_data import lab_file

    repo = Path(__file__).resolve().parents[1]
    for name in ("real_lab.json", "budget_sweep.json", "budget_sweep_lab_teacher.json",
                 "sgm_mechanism.json", "transfer_set.json"):
        shipped = repo / "kdas_lite" / "lab_data" / name
        assert shipped.is_symlink(), "one copy only: the package holds a link into docs/results"
        assert shipped.resolve() == (repo / "docs" / "results" / name).resolve()
        assert lab_file(name).read_bytes() == (repo / "docs" / "results" / name).read_bytes()
    pyproject = (repo / "pyproject.toml").read_text(encoding="utf-8")
    assert '\n"kdas_lite.lab_data" = ["*.json"]' in pyproject  # the wheel gets the files
    with pytest.raises(DataError, match=r"shipped: .*real_lab\.json"):
        lab_file("nothing.json")


def test_describe_run_names_pair_data_labels_and_size(tmp_path: Path) -> None:
    from kdas_lite.data import SetStatus
    from kdas_lite.data.registry import DataLayout
    from kdas_lite.walkthrough import data_label, describe_run

    layout = DataLayout(tmp_path / "shared" / "data", "pranet", tmp_path / "train",
                        {"CVC-300": tmp_path / "c", "ETIS-LaribPolypDB": tmp_path / "e"},
                        status={"CVC-300": SetStatus("CVC-300", 60, 60, "inferred"),
                                "ETIS-LaribPolypDB": SetStatus("ETIS-LaribPolypDB", 20, 196,
                                                               "partial")})
    line = describe_run(layout, 128, "tf_efficientnet_lite2", "tf_efficientnet_lite0", True)
    assert line.startswith("**This run:** teacher `tf_efficientnet_lite2`")
    assert "(ImageNet-pretrained) · data: real data, shared/data" in line
    assert "CVC-300 (inferred), ETIS-LaribPolypDB (20/196)" in line
    assert line.endswith("image size 128 px") and str(tmp_path) not in line
    assert data_label(dataclasses.replace(layout, synthetic=True)) == "SYNTHETIC stand-in"


def _import_graph(package: Path) -> dict[str, set[str]]:
    """Module → the kdas_lite modules it imports anywhere in its source (function-level and
    ``TYPE_CHECKING`` imports included), leaving out a package's edges to and from its own
    submodules (``kdas_lite.data`` re-exports ``kdas_lite.data.io``: not a circle)."""
    import ast

    modules = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        here = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                found.update([base, *(f"{base}.{alias.name}" for alias in node.names)])
        graph[module] = {
            target for target in map(resolve, (n for n in found if n.startswith("kdas_lite")))
            if target and target != module
            and not target.startswith(module + ".") and not module.startswith(target + ".")}
    return graph


def test_import_arrows_point_one_way() -> None:
    """No two modules of the package import each other, directly or through others."""
    graph = _import_graph(Path(kdas_lite.__file__).parent)
    circles = []
    for start in graph:  # a depth-first walk from each module back to itself
        stack, seen = [(start, (start,))], set()
        while stack:
            module, path = stack.pop()
            for target in graph[module]:
                if target == start:
                    circles.append(" → ".join((*path, start)))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, (*path, target)))
    assert not circles, "import circles:\n" + "\n".join(sorted(circles))
