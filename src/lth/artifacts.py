"""Reading and writing artifacts: atomically, without executing pickled code.

Weights and masks are safetensors files of numpy arrays, so stages that only move
numbers around (prune, reset) never import torch. Every write goes to a temporary
file in the destination directory and is renamed into place, so a killed stage
never leaves a half-written file that a later stage would accept.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from lth import LthError

Arrays = dict[str, np.ndarray]
UMASK = os.umask(0o022)
os.umask(UMASK)  # read the process's umask (there is no getter) and put it back


class ArtifactError(LthError):
    """An artifact that is missing, truncated or corrupted."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes 0600 files; an artifact gets the modes of any new file (a team can read it)
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path, made_by: str) -> Any:
    return read(path, made_by, lambda p: json.loads(Path(p).read_text()))


def save_arrays(path: str | Path, arrays: Arrays) -> None:
    """Save as safetensors. No metadata: its order in the header varies between runs,
    which would break bit-identical artifacts."""
    from safetensors.numpy import save_file

    contiguous = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp))


def load_arrays(path: str | Path, made_by: str) -> Arrays:
    """Load a safetensors file; on failure name the file and the stage that makes it."""
    from safetensors.numpy import load_file

    return read(path, made_by, lambda p: load_file(str(p)))


def read(path: str | Path, made_by: str, reader: Callable[[Path], Any]) -> Any:
    """Read `path` with `reader`; any failure becomes an error naming the file and its stage."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: missing; it is made by the '{made_by}' stage, run that first")
    try:
        return reader(path)
    except Exception as err:  # any parse failure means a damaged file
        raise ArtifactError(
            f"{path}: unreadable ({type(err).__name__}: {err}); the file is truncated or corrupted. "
            f"Delete it and rerun the '{made_by}' stage that makes it."
        ) from None
