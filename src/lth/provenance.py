"""What made an artifact: recorded in every training's metrics.json and listed by the report."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from lth import __version__


def code_version() -> str:
    """The git commit of the checkout the code runs from ("-dirty" if src/ has edits),
    or the package version where the code is not a git checkout."""
    src = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "."], capture_output=True,
                               text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"lth {__version__}"
    return f"git {commit[:12]}{'-dirty' if dirty else ''}"


def record(device: str, threads: int, seed: int) -> dict:
    import torch

    return {"code": code_version(), "lth": __version__, "torch": torch.__version__,
            "python": platform.python_version(), "device": device, "threads": threads, "seed": seed}
