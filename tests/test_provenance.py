"""The code version a result records: the checkout's commit, "-dirty" when src/lth has edits."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lth import __version__
from lth.provenance import code_version

SRC = Path(__file__).resolve().parents[1] / "src" / "lth"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_code_version_is_the_commit_and_whether_src_has_edits():
    try:
        commit = git(SRC, "rev-parse", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        assert code_version() == f"lth {__version__}"  # not a git checkout (an installed copy)
        return
    dirty = bool(git(SRC, "status", "--porcelain", "--", "."))
    assert code_version() == f"git {commit[:12]}{'-dirty' if dirty else ''}"


def version_of_copy(repo: Path) -> str:
    """code_version() of the copy of lth in `repo` (it asks git about the directory it is in)."""
    code = "from lth.provenance import code_version; print(code_version())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(repo / "src")}).stdout.strip()


@pytest.mark.parametrize("edit", ["untracked", "modified"])
def test_an_edit_in_src_makes_it_dirty(tmp_path, edit):
    """In a throwaway repository with a copy of src/lth: no commit gives the package version;
    an edit outside src/lth changes nothing; an untracked or modified file in it, "-dirty"."""
    repo = tmp_path / "repo"
    shutil.copytree(SRC, repo / "src" / "lth", ignore=shutil.ignore_patterns("__pycache__"))
    git(tmp_path, "init", "-q", str(repo))
    assert version_of_copy(repo) == f"lth {__version__}"
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    commit = git(repo, "rev-parse", "HEAD")
    (repo / "outside.txt").write_text("not under src/lth")
    assert version_of_copy(repo) == f"git {commit[:12]}"
    if edit == "untracked":
        (repo / "src" / "lth" / "new.py").write_text("")
    else:
        with open(repo / "src" / "lth" / "__init__.py", "a") as f:
            f.write("\n")
    assert version_of_copy(repo) == f"git {commit[:12]}-dirty"
