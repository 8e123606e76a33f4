"""The committed lab results, shipped with the package.

``docs/results/`` holds the summaries of the real-data lab: ``real_lab.json`` and
``sgm_mechanism.json`` (written by ``experiments/real_lab.py``, the latter with
``--mechanism`` and ``experiments/sgm_map_stats.py``), ``budget_sweep.json`` and
``budget_sweep_lab_teacher.json`` (written by ``experiments/budget_sweep.py``: the same sweep from
its own teacher and from the lab's) and ``transfer_set.json`` (written by
``experiments/transfer_set.py``: a teacher that brings images the labels lack). This folder
holds **links** to them, not copies: in the source tree (and an editable install) they resolve
to ``docs/results/``, and building a wheel or an sdist copies the files they point to
(``[tool.setuptools.package-data]`` in ``pyproject.toml``), so an installed package — e.g. on
Colab — carries the same numbers as the repository, and there is one hand-maintained copy only.
"""

from __future__ import annotations

from pathlib import Path

from kdas_lite.errors import DataError

__all__ = ["lab_file"]

_HERE = Path(__file__).resolve().parent


def lab_file(name: str = "real_lab.json") -> Path:
    """The shipped copy of ``docs/results/<name>`` (e.g. ``"real_lab.json"``).

    Raises:
        DataError: no such file ships with this installation (the message lists those that do).
    """
    path = _HERE / name
    if not path.is_file():
        shipped = sorted(p.name for p in _HERE.iterdir() if p.suffix == ".json")
        raise DataError(f"no committed lab file {name!r} in {_HERE}; shipped: "
                        f"{', '.join(shipped) or 'none'} (docs/results/ in the repository)")
    return path
