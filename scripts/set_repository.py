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
# GitHub's rules: an owner is 1-39 letters, digits or single hyphens, neither first nor last; a
# repository name is 1-100 letters, digits, ".", "_" or "-", and neither "." nor "..". Always
# matched with fullmatch: "$" of re.match also matches before a trailing newline.
_OWNER = re.compile(r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}")
_REPO_NAME = re.compile(r"(?!\.\.?$)[A-Za-z0-9._-]{1,100}")
# A branch or tag: letters, digits, ".", "_", "-" and "/", with git's rules (check-ref-format)
# on top: no "..", "//", leading "-" or "/", trailing "/" or ".", component starting with "."
# or ending with ".lock".
_REF = re.compile(r"(?!-)(?!.*\.\.)(?!.*//)(?!/)(?!.*/$)(?!.*\.$)(?!(?:.*/)?\.)"
                  r"(?!.*\.lock(?:/|$))[A-Za-z0-9._/-]{1,200}")
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
    rewritten = {pyproject: text}
    for path in course_files(root):
        before = path.read_text(encoding="utf-8")
        after = _replace(before, old, new)
        if after != before:
            rewritten[path] = after
    for path, after in rewritten.items():  # every notebook must stay a notebook: check first
        if path.suffix == ".ipynb":
            try:
                json.loads(after)
            except ValueError as exc:
                raise SystemExit(f"set_repository.py: error: {new.slug}@{new.ref} would make "
                                 f"{path} invalid JSON ({exc}); nothing was written") from None
    for path, after in rewritten.items():
        path.write_text(after, encoding="utf-8")
    return list(rewritten)


def disagreements(root: Path = REPO) -> list[str]:
    """Every badge or install URL in :func:`course_files` that names another repository or
    ref than the setting, and every notebook whose badge or install cell is missing."""
    setting = read_setting(root)
    problems = []
    for path in course_files(root):
        if path.suffix == ".html":  # rendered copies: `make notebooks` regenerates them
            continue
        shown = path.relative_to(root)
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".ipynb":  # the cells' text, not its JSON escaping
                text = "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            what = "notebook" if path.suffix == ".ipynb" else "text file"
            problems.append(f"{shown}: not a readable {what} ({type(exc).__name__}: {exc}); "
                            "restore it with git checkout")
            continue
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
    owner, _, name = (args.repository or "").partition("/")
    if not (_OWNER.fullmatch(owner) and _REPO_NAME.fullmatch(name)):
        parser.error("give the repository as OWNER/NAME, e.g. acme/kdas-course (GitHub's "
                     "rules: an owner of up to 39 letters, digits or single inner hyphens, a "
                     "name of up to 100 letters, digits, '.', '_' or '-', not '.' or '..'); got "
                     f"{args.repository!r}")
    if not _REF.fullmatch(args.ref):
        parser.error(f"--ref {args.ref!r} is not a branch or tag name (letters, digits, '.', "
                     "'_', '-' and '/', without '..', '//', a leading '-' or '.', a trailing "
                     "'/' or '.', or '.lock')")
    changed = set_repository(Setting(owner, name, args.ref))
    for path in changed:
        print(f"rewrote {path.relative_to(REPO)}")
    print(f"the badges and install cells now name {args.repository}@{args.ref}; commit and push "
          "these files so that the badges open your copy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
