"""Point every "Open in Colab" badge, install cell and README link at one GitHub repository.

    python scripts/set_repository.py OWNER/NAME [--ref REF]   # rewrite, e.g. acme/course
    python scripts/set_repository.py --check                  # do they all agree? (exit 1 if not)

The repository is set in one place, ``[project.urls]`` of ``pyproject.toml``::

    Repository = "https://github.com/OWNER/NAME"
    Notebooks = "https://github.com/OWNER/NAME/tree/REF/notebooks"

(``REF``: the branch or tag the badges open and the install cells install; ``main`` by
default). The script rewrites that setting and every place that names it: the badges
(``https://colab.research.google.com/github/OWNER/NAME/blob/REF/notebooks/<file>``) and the
install cells (``git+https://github.com/OWNER/NAME@REF``) and the links to the course's pages
(``https://github.com/OWNER/NAME/blob/REF/docs/...``) of ``notebooks/*.ipynb``, the links of
``README.md`` and ``notebooks/README.md``, and the rendered copies in ``docs/notebooks/``. Only
the current repository's name is replaced: links to other projects (PraNet, KDAS) stay.

Exit status: 0 done (or, with ``--check``, everything agrees), 1 ``--check`` found a place that
names another repository, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?/[A-Za-z0-9._-]+$")
_REF = re.compile(r"^[A-Za-z0-9._/-]+$")
_REPOSITORY = re.compile(r'^(Repository\s*=\s*")https://github\.com/([^/"]+)/([^/"]+)(")',
                         re.MULTILINE)
_NOTEBOOKS = re.compile(
    r'^(Notebooks\s*=\s*")https://github\.com/([^/"]+)/([^/"]+)/tree/([^"]+)/notebooks(")',
    re.MULTILINE)
# every place that names a repository for the course (checked by --check)
_COLAB_URL = re.compile(r"https://colab\.research\.google\.com/github/([^/\s\"')]+)/"
                        r"([^/\s\"')]+)/blob/([^\s\"')]+?)/notebooks/")
_DOC_URL = re.compile(r"https://github\.com/([^/\s\"')]+)/([^/\s\"')]+)/blob/([^\s\"')]+?)/"
                      r"(?:docs|notebooks)/")  # the notebooks' links to the course's pages
_INSTALL_URL = re.compile(r"git\+https://github\.com/([^/\s\"'@]+)/([^/\s\"'@<]+?)"
                          r"(?:@([^\s\"'<]+))?(?=[\s\"'<]|$)")


@dataclass(frozen=True)
class Setting:
    """The repository the course's links name."""

    owner: str
    name: str
    ref: str = "main"

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.name}"

    def colab(self, notebook: str) -> str:
        """The "Open in Colab" URL of ``notebooks/<notebook>``."""
        return (f"https://colab.research.google.com/github/{self.slug}/blob/{self.ref}/"
                f"notebooks/{notebook}")

    @property
    def install(self) -> str:
        """What the notebooks' install cell gives pip."""
        return f"kdas-lite[offline-weights] @ git+https://github.com/{self.slug}@{self.ref}"


def read_setting(root: Path = REPO) -> Setting:
    """The :class:`Setting` of ``root/pyproject.toml``'s ``[project.urls]``.

    Raises:
        SystemExit: the two URLs are missing or disagree (the message says what to write).
    """
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    repository, notebooks = _REPOSITORY.search(text), _NOTEBOOKS.search(text)
    if repository is None or notebooks is None or repository.group(2, 3) != notebooks.group(2, 3):
        raise SystemExit(
            f"set_repository.py: error: {root / 'pyproject.toml'} needs, under [project.urls], "
            'Repository = "https://github.com/OWNER/NAME" and Notebooks = '
            '"https://github.com/OWNER/NAME/tree/REF/notebooks" naming the same repository')
    return Setting(repository.group(2), repository.group(3), notebooks.group(4))


def course_files(root: Path = REPO) -> list[Path]:
    """The files that name the repository: notebooks, READMEs, rendered notebook pages."""
    files = [root / "README.md", root / "notebooks" / "README.md",
             *sorted((root / "notebooks").glob("*.ipynb")),
             *sorted((root / "docs" / "notebooks").glob("*.html"))]
    return [path for path in files if path.is_file()]


def _replace(text: str, old: Setting, new: Setting) -> str:
    pairs = [
        (f"github/{old.slug}/blob/{old.ref}/", f"github/{new.slug}/blob/{new.ref}/"),
        (f"git+https://github.com/{old.slug}@{old.ref}", f"git+https://github.com/{new.slug}@{new.ref}"),
        (f"github.com/{old.slug}/tree/{old.ref}/", f"github.com/{new.slug}/tree/{new.ref}/"),
        (f"github.com/{old.slug}/blob/{old.ref}/", f"github.com/{new.slug}/blob/{new.ref}/"),
        (f"github.com/{old.slug}", f"github.com/{new.slug}"),
        (f"`{old.slug}`", f"`{new.slug}`"),
    ]
    for before, after in pairs:
        text = text.replace(before, after)
    return text


def set_repository(new: Setting, root: Path = REPO) -> list[Path]:
    """Rewrite the setting and every file of :func:`course_files` from the current setting to
    ``new``; returns the files changed."""
    old = read_setting(root)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    text = _REPOSITORY.sub(rf"\g<1>https://github.com/{new.slug}\g<4>", text)
    text = _NOTEBOOKS.sub(rf"\g<1>https://github.com/{new.slug}/tree/{new.ref}/notebooks\g<5>",
                          text)
    changed = []
    for path in [pyproject, *course_files(root)]:
        before = path.read_text(encoding="utf-8") if path != pyproject else None
        after = text if path == pyproject else _replace(before, old, new)
        if path == pyproject or after != before:
            path.write_text(after, encoding="utf-8")
            changed.append(path)
    return changed


def disagreements(root: Path = REPO) -> list[str]:
    """Every badge or install URL in :func:`course_files` that names another repository or
    ref than the setting, and every notebook whose badge or install cell is missing."""
    setting = read_setting(root)
    problems = []
    for path in course_files(root):
        if path.suffix == ".html":  # rendered copies: `make notebooks` regenerates them
            continue
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".ipynb":  # the cells' text, not its JSON escaping
            text = "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
        shown = path.relative_to(root)
        for match in _COLAB_URL.finditer(text):
            if match.groups() != (setting.owner, setting.name, setting.ref):
                problems.append(f"{shown}: badge {match.group(0)}")
        for match in _INSTALL_URL.finditer(text):
            if match.groups() != (setting.owner, setting.name, setting.ref):
                problems.append(f"{shown}: install URL {match.group(0)}")
        for match in _DOC_URL.finditer(text) if path.suffix == ".ipynb" else ():
            if match.groups() != (setting.owner, setting.name, setting.ref):
                problems.append(f"{shown}: link {match.group(0)}")
        if path.suffix == ".ipynb":
            if setting.colab(path.name) not in text:
                problems.append(f"{shown}: no badge {setting.colab(path.name)}")
            if setting.install not in text:
                problems.append(f"{shown}: no install cell for {setting.install}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="set_repository.py", description=__doc__.split("\n")[0])
    parser.add_argument("repository", nargs="?", help="OWNER/NAME of the GitHub repository")
    parser.add_argument("--ref", default="main", help="branch or tag (default: main)")
    parser.add_argument("--check", action="store_true",
                        help="only check that every badge and install cell names the setting")
    args = parser.parse_args(argv)
    if args.check:
        problems = disagreements()
        print("\n".join(problems) or f"all links name {read_setting().slug}@{read_setting().ref}")
        return 1 if problems else 0
    if not args.repository or not _NAME.match(args.repository):
        parser.error("give the repository as OWNER/NAME, e.g. acme/kdas-course")
    if not _REF.match(args.ref):
        parser.error(f"--ref {args.ref!r} is not a branch or tag name")
    owner, name = args.repository.split("/")
    changed = set_repository(Setting(owner, name, args.ref))
    for path in changed:
        print(f"rewrote {path.relative_to(REPO)}")
    print(f"the badges and install cells now name {args.repository}@{args.ref}; commit and push "
          "these files so that the badges open your copy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
