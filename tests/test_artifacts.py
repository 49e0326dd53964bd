import re

import numpy as np
import pytest

from lth.artifacts import ArtifactError, atomic_path, load_arrays, save_arrays
from lth.cli import main


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.bin"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_truncated_artifact_names_file_and_stage(tmp_path):
    path = tmp_path / "trained.safetensors"
    save_arrays(path, {"fc1.weight": np.ones((30, 30), np.float32)})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ArtifactError, match=r"trained.safetensors: unreadable .* rerun the 'train' stage"):
        load_arrays(path, made_by="train")


def test_cli_reports_a_corrupt_input_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "round03" / "mask.safetensors"
    bad.parent.mkdir()
    bad.write_bytes(b"garbage")
    out = tmp_path / "round03" / "random" / "mask.safetensors"
    code = main(["shuffle", "--seed", "0", "--mask", str(bad), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "round03/mask.safetensors: unreadable" in err and "rerun the 'prune' stage" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_cli_reports_bad_params(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("seeds: [0]\n")
    code = main(["aggregate", "--params", str(params), "--out", str(tmp_path)])
    assert code == 1
    assert re.search(r"params.yaml: \(top level\): '\w+' is a required property", capsys.readouterr().err)


def test_artifacts_get_the_modes_of_new_files_not_mkstemps_0600(tmp_path):
    import os

    from lth.artifacts import UMASK, write_text

    write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~UMASK
    assert os.umask(UMASK) == UMASK  # and the process umask is unchanged
