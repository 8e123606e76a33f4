"""Execute the kdas_lite notebooks in order with papermill (CPU) and report the time of each.

    python scripts/run_notebooks.py                       # smoke parameters, CI (a few minutes)
    python scripts/run_notebooks.py --params smoke-pvt --only 02   # CI: the PVTv2 pair in 02
    python scripts/run_notebooks.py --params cpu-lab      # the lab run (the notebooks' defaults)
    python scripts/run_notebooks.py --prepare-only --output build/nbval   # for pytest --nbval-lax

Each notebook's single ``parameters`` cell receives the chosen parameter set (only the names it
declares). All notebooks share one run folder (``--runs``, default
``build/notebook-runs/<params>``) for checkpoints, the synthetic data and the evaluation tables,
as they share ``runs/notebooks`` when opened in Jupyter: 02–05 start from the checkpoints of
01 and 04. An execution run starts from an empty run folder, so every training cell really
trains: a folder this script made (it holds its :data:`MARKER` file) is emptied first, any
other non-empty folder is refused, nothing deleted (``--keep-runs`` keeps it as it is);
``--prepare-only`` writes the parameterised notebooks without executing them and keeps the
folder, so that nbval, run right after, reuses the checkpoints (the notebooks resume finished
runs instead of training again).

**One run, one id.** An execution gets a run id (``--run-id``, default :func:`new_run_id`:
the UTC date, the git HEAD's short hash and a random part, e.g. ``2026-12-03-d1959ab-7c1e``),
passed to every kernel in the environment (``KDAS_RUN_ID``, :mod:`kdas_lite.facts`): each
notebook's setup cell prints it. The kernels also get ``KDAS_FACTS``, the run's facts file
``<runs>/facts.json``, where the library records what each notebook states about each
checkpoint (scores, validation Dice, epochs, image size) and which runs it trained or reused.

Data: ``--data auto`` (default) uses the real datasets under ``../shared/data`` (or
``--data-root``) when present, otherwise the notebooks generate the synthetic stand-in;
``synthetic`` / ``real`` force one.
With real data the smoke run evaluates only CVC-300 (60 images) to stay fast (notebook 04's
comparison too).

``--update-checked-outputs`` copies, after the run, the outputs of the cells that start with
``# NBVAL_CHECK_OUTPUT`` from the executed notebooks back into ``notebooks/`` (the only
outputs committed; nbval compares them). Run it after changing such a cell.

Exit status: 0 when every notebook ran, 1 when a cell failed (the executed notebook in
``--output`` shows the error), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import datetime
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
SHARED_DATA = REPO.parent / "shared" / "data"

SMOKE: dict[str, Any] = {
    "image_size": 64, "epochs": 1, "batch_size": 2, "max_train_images": 8, "max_val_images": 4,
    "synthetic_images": 12, "synthetic_size": 64, "n_test_images": 4, "n_images": 3,
    "teacher_epochs": 1, "teacher_train_images": 8, "seeds": [0, 1], "device": "cpu",
    # notebook 06: a short clip, few crops and calibration images, two timed calls
    "video_frames": 8, "n_crops": 8, "calibration_images": 4, "check_images": 4,
    "timing_repeats": 2,
}
PARAMS: dict[str, dict[str, Any]] = {
    # CI: tiny images, one epoch, a handful of images (about a minute per notebook on 2 cores),
    # with the encoders a user gets by default (offline: the EfficientNet-Lite ImageNet pair)
    "smoke": SMOKE,
    # CI: the same with the paper's PVTv2 pair from random initialisation (notebook 02's
    # encoder-attention figures and explorer controls exist only for PVTv2)
    "smoke-pvt": {**SMOKE, "encoders": "pvt", "pretrained": False},
    # the lab scale: the notebooks' own defaults (the cpu-lab preset), on CPU
    "cpu-lab": {"device": "cpu"},
}
SMOKE_REAL_TEST_SETS = ["CVC-300"]
CHECK = "# NBVAL_CHECK_OUTPUT"
MARKER = ".run_notebooks"
"""The file that marks a run folder as made by this script (only such a folder is emptied)."""


def git_state() -> tuple[str, bool]:
    """The git HEAD's short hash (``"nogit"`` outside a checkout) and whether the working tree
    has uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        return git("rev-parse", "--short=7", "HEAD"), bool(git("status", "--porcelain"))
    except (OSError, subprocess.CalledProcessError):
        return "nogit", False


def new_run_id() -> str:
    """A course run's id: the UTC date, the git HEAD's short hash and four random hex digits
    (two runs of one commit on one day differ), e.g. ``2026-12-03-d1959ab-7c1e``."""
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    return f"{today}-{git_state()[0]}-{secrets.token_hex(2)}"


def empty_run_folder(runs: Path) -> None:
    """Make ``runs`` an empty run folder marked as this script's: a folder it made before is
    emptied; any other non-empty folder is refused (SystemExit), nothing deleted."""
    if runs.is_dir() and any(runs.iterdir()):
        if not (runs / MARKER).is_file():
            raise SystemExit(f"{runs} is not empty and was not made by run_notebooks.py: "
                             "pass an empty --runs folder (nothing was deleted)")
        shutil.rmtree(runs)
    runs.mkdir(parents=True, exist_ok=True)
    (runs / MARKER).write_text("made by scripts/run_notebooks.py; emptied by its next run\n",
                               encoding="utf-8")


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks, in order (``only``: prefixes such as ``01``)."""
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.name.startswith(prefix) for prefix in only)]
    return paths


def _has_real_data(root: Path = SHARED_DATA) -> bool:
    from kdas_lite.data import find_layout
    from kdas_lite.errors import DataError

    try:
        return bool(find_layout(root).test)
    except DataError:
        return False


def parameters(name: str, data: str, runs: Path, data_root: Path = SHARED_DATA
               ) -> dict[str, Any]:
    """The parameter values for every notebook of parameter set ``name``."""
    values = dict(PARAMS[name], run_root=str(runs))
    real = data == "real" or (data == "auto" and _has_real_data(data_root))
    if data == "real" and not _has_real_data(data_root):
        raise SystemExit(f"--data real: no dataset with test sets under {data_root}")
    if real:
        values.update(data_root=str(data_root), use_synthetic=False)
        if name.startswith("smoke"):
            values["test_sets"] = SMOKE_REAL_TEST_SETS
            values["comparison_set"] = SMOKE_REAL_TEST_SETS[0]  # notebook 04
    else:
        values["use_synthetic"] = True
    return values


def run(paths: list[Path], values: dict[str, Any], output: Path, prepare_only: bool,
        timeout: int) -> list[tuple[str, float, str]]:
    """Execute (or only parameterise) ``paths`` into ``output``; returns (name, s, status)."""
    import papermill as pm
    from jupyter_client.kernelspec import NoSuchKernel

    output.mkdir(parents=True, exist_ok=True)
    # The kernels inherit this environment: draw figures as inline PNGs, as Jupyter does, even
    # when the caller exported MPLBACKEND=Agg (CI does, for the unit tests).
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    report = []
    for path in paths:
        declared = pm.inspect_notebook(str(path))
        chosen = {k: v for k, v in values.items() if k in declared}
        start = time.perf_counter()
        status = "ok"
        try:
            pm.execute_notebook(
                str(path), str(output / path.name), parameters=chosen, kernel_name="python3",
                prepare_only=prepare_only, progress_bar=False, cwd=str(NOTEBOOKS),
                execution_timeout=timeout,
            )
        except pm.PapermillExecutionError as exc:
            status = f"FAILED in cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        except NoSuchKernel:
            raise SystemExit(
                "no Jupyter kernel named 'python3' for this environment. Install it with:\n"
                f"  {sys.executable} -m ipykernel install --sys-prefix --name python3"
            ) from None
        seconds = time.perf_counter() - start
        report.append((path.name, seconds, status))
        print(f"{path.name:40s} {seconds:7.1f} s  {status}", flush=True)
    return report


def update_checked_outputs(executed: Path, source: Path) -> int:
    """Copy the outputs of ``# NBVAL_CHECK_OUTPUT`` cells from ``executed`` into ``source``
    (matched by cell id). Returns the number of cells updated.

    Such a cell gets ``execution_count`` 1 (nbval skips reference cells that were never run);
    every other cell keeps no output and no count.
    """
    import nbformat

    ran = {cell.id: cell for cell in nbformat.read(executed, as_version=4).cells}
    nb = nbformat.read(source, as_version=4)
    updated = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith(CHECK):
            outputs = ran[cell.id].outputs
            for output in outputs:
                if "execution_count" in output:
                    output.execution_count = 1
            cell.outputs, cell.execution_count, updated = outputs, 1, updated + 1
    source.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return updated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", choices=sorted(PARAMS), default="smoke",
                        help="parameter set (default: smoke)")
    parser.add_argument("--output", type=Path, default=REPO / "build" / "notebooks",
                        help="folder for the executed notebooks (default: build/notebooks)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="run folder shared by the notebooks "
                             "(default: build/notebook-runs/<params>)")
    parser.add_argument("--data", choices=("auto", "synthetic", "real"), default="auto",
                        help="dataset: ../shared/data when present (auto), or force one")
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA,
                        help="where the real datasets are (default: ../shared/data)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="write the parameterised notebooks without executing them")
    parser.add_argument("--keep-runs", action="store_true",
                        help="do not empty the run folder before executing")
    parser.add_argument("--only", nargs="+", metavar="NN",
                        help="run only these notebooks, by number prefix (e.g. 01 03)")
    parser.add_argument("--update-checked-outputs", action="store_true",
                        help=f"copy the outputs of '{CHECK}' cells into notebooks/ after the run")
    parser.add_argument("--timeout", type=int, default=3600,
                        help="seconds allowed per cell (default: 3600)")
    parser.add_argument("--run-id", default=None,
                        help="the run's id, printed by every notebook (default: new_run_id())")
    args = parser.parse_args(argv)
    if args.update_checked_outputs and (args.prepare_only or args.params != "smoke"):
        parser.error("--update-checked-outputs goes with an executed smoke run")

    paths = notebooks(args.only)
    if not paths:
        parser.error(f"no notebook matches {args.only} in {NOTEBOOKS}")
    runs = (args.runs or REPO / "build" / "notebook-runs" / args.params).resolve()
    values = parameters(args.params, args.data, runs, args.data_root.resolve())
    run_id = args.run_id or new_run_id()
    if not args.prepare_only:
        from kdas_lite.facts import FACTS_ENV, RUN_ID_ENV, new_facts

        if args.keep_runs:
            runs.mkdir(parents=True, exist_ok=True)
            if (runs / MARKER).is_file():  # this script's facts of an earlier run
                (runs / "facts.json").unlink(missing_ok=True)
        else:
            empty_run_folder(runs)
        os.environ[RUN_ID_ENV] = run_id  # the kernels inherit both
        os.environ[FACTS_ENV] = str(new_facts(runs / "facts.json", run_id))
    action = "preparing" if args.prepare_only else f"executing (run id {run_id})"
    print(f"{action} {len(paths)} notebooks with the {args.params!r} parameters -> {args.output}"
          f"\nrun folder: {runs}\nparameters: {values}", flush=True)
    start = time.perf_counter()
    report = run(paths, values, args.output.resolve(), args.prepare_only, args.timeout)
    failed = [name for name, _, status in report if status != "ok"]
    if args.update_checked_outputs and not args.prepare_only:
        for path in paths:
            if path.name not in failed:
                count = update_checked_outputs(args.output.resolve() / path.name, path)
                print(f"{path.name}: {count} checked cell(s) updated")
    print(f"total {time.perf_counter() - start:.1f} s; "
          + (f"FAILED: {', '.join(failed)}" if failed else "all notebooks ran"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
