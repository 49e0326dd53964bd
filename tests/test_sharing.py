"""Teams: results shared through one cache on shared storage, and one workspace, one run.

Real `dvc repro` and `snakemake --cache` in separate workspaces ("colleagues") on the tiny config.
"""

import os
import re
import stat
import subprocess
import time

import pytest
from conftest import TINY, Pipeline, digests, run

pytestmark = pytest.mark.pipeline

# How DVC 3 fails one of two runs that save the same stage at once into one cache (README,
# Sharing): the run-cache entry's temporary file was deleted under it, or the output's cache
# object was not there yet when the run relinked its workspace file to it.
RUN_CACHE_RACE = re.compile(r"No such file or directory: \S*shared-cache/runs/\S+\.tmp"
                            r"|unable to remove '\S+/runs/\S+' without a confirmation")


def share(pipe: Pipeline, cache) -> None:
    """The set-up the README gives: one cache directory for the group, its run-cache included."""
    run(["dvc", "cache", "dir", str(cache)], pipe.path, pipe.env)
    run(["dvc", "config", "cache.shared", "group"], pipe.path, pipe.env)


def test_a_colleague_restores_finished_stages_from_the_shared_cache(tmp_path, mnist_dir):
    cache = tmp_path / "shared-cache"
    alice = Pipeline("dvc", tmp_path / "alice", TINY, mnist_dir)
    share(alice, cache)
    assert "train@tiny-s0-r02" in alice.repro()
    bob = Pipeline("dvc", tmp_path / "bob", TINY, mnist_dir)
    share(bob, cache)
    out = run(["dvc", "repro"], bob.path, bob.env).stdout
    assert "Running stage" not in out  # nothing trained, nothing recomputed
    assert "is cached - skipping run, checking out outputs" in out
    assert digests(bob.path) == digests(alice.path)
    # group-shared, never world-writable
    modes = [f.stat().st_mode for f in cache.rglob("*") if f.is_file()]
    assert modes and not any(m & stat.S_IWOTH for m in modes)
    # after an edit of the training code, bob retrains instead of taking stale results
    train_py = bob.path / "src/lth/train.py"
    train_py.write_text(train_py.read_text() + "\n# a colleague's edit\n")
    ran = bob.repro()
    assert {"train@tiny-s0-r00", "train@tiny-s0-r01", "train@tiny-s0-r02"} <= ran


def test_two_colleagues_writing_to_one_cache_at_once_corrupt_nothing(tmp_path, mnist_dir):
    cache = tmp_path / "shared-cache"
    pipes = [Pipeline("dvc", tmp_path / name, TINY, mnist_dir) for name in ("a", "b", "c")]
    for pipe in pipes:
        share(pipe, cache)
    logs = [tmp_path / f"{pipe.path.name}.log" for pipe in pipes[:2]]
    procs = []
    for pipe, log in zip(pipes[:2], logs, strict=True):
        with log.open("w") as out:
            procs.append(subprocess.Popen(["dvc", "repro"], cwd=pipe.path, env=pipe.env, stdout=out,
                                          stderr=subprocess.STDOUT))
    codes = [proc.wait(timeout=900) for proc in procs]  # both finished before any rerun
    for pipe, code, log in zip(pipes[:2], codes, logs, strict=True):
        if code != 0:
            # one of DVC's shared-cache races (README, Sharing). Nothing else may fail, and a
            # rerun must finish the workspace.
            assert RUN_CACHE_RACE.search(log.read_text()), log.read_text()[-4000:]
            run(["dvc", "repro"], pipe.path, pipe.env)
    assert digests(pipes[0].path) == digests(pipes[1].path)
    out = run(["dvc", "repro"], pipes[2].path, pipes[2].env).stdout  # a third restores everything
    assert "Running stage" not in out
    assert digests(pipes[2].path) == digests(pipes[0].path)
    for pipe in pipes[:2]:
        assert "Data and pipelines are up to date" in run(["dvc", "status"], pipe.path, pipe.env).stdout


@pytest.mark.parametrize("tool", ["dvc", "snakemake"])
def test_a_second_run_on_the_same_workspace_is_refused(tmp_path, mnist_dir, tool):
    pipe = Pipeline(tool, tmp_path / "ws", TINY, mnist_dir)
    cmd = ["dvc", "repro"] if tool == "dvc" else ["snakemake", "--cores", "1"]
    first = subprocess.Popen(cmd, cwd=pipe.path, env=pipe.env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    lock = pipe.path / (".dvc/tmp/lock" if tool == "dvc" else ".snakemake/locks")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (lock.is_file() or (lock.is_dir() and any(lock.iterdir()))):
        time.sleep(0.05)
    time.sleep(1.0)  # the first run holds its lock while it works
    second = subprocess.run(cmd, cwd=pipe.path, env=pipe.env, capture_output=True, text=True)
    assert first.wait(timeout=900) == 0
    assert second.returncode != 0
    words = (second.stdout + second.stderr).lower()
    # dvc: "Unable to acquire lock"; snakemake: "Directory cannot be locked", or, when it meets the
    # first run's files in progress before the lock, "Incomplete files: ..."
    assert "lock" in words or (tool == "snakemake" and "incomplete files" in words)
    # and the finished workspace is intact: a rerun has nothing to do
    assert pipe.repro() == set()


def test_snakemake_output_cache_shares_trainings_between_workspaces(tmp_path, mnist_dir):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o2770)  # the README's set-up: only the group can enter the cache's parent
    (shared / "cache").mkdir()
    pipes = [Pipeline("snakemake", tmp_path / name, TINY, mnist_dir) for name in ("alice", "bob")]
    for pipe in pipes:
        pipe.env["SNAKEMAKE_OUTPUT_CACHE"] = str(shared / "cache")
    cmd = ["snakemake", "--cores", "2", "--cache"]
    run(cmd, pipes[0].path, pipes[0].env)
    out = run(cmd, pipes[1].path, pipes[1].env)
    log = out.stdout + out.stderr
    bob = pipes[1].path
    for k in range(3):
        assert f"Symlinking output file runs/tiny/seed0/round{k:02d}/trained.safetensors from cache." in log
        assert (bob / f"runs/tiny/seed0/round{k:02d}/trained.safetensors").is_symlink()
        assert (bob / f"logs/train/runs/tiny/seed0/round{k:02d}.log").read_text() == ""  # nothing trained
    assert digests(bob) == digests(pipes[0].path)
    assert not shared.stat().st_mode & stat.S_IRWXO
    # after an edit of the training code, bob retrains instead of taking stale results
    entries = {k: os.readlink(bob / f"runs/tiny/seed0/round{k:02d}/trained.safetensors") for k in range(3)}
    train_py = bob / "src/lth/train.py"
    train_py.write_text(train_py.read_text() + "\n# a colleague's edit\n")
    run(cmd, bob, pipes[1].env)
    for k in range(3):
        assert "train:" in (bob / f"logs/train/runs/tiny/seed0/round{k:02d}.log").read_text()
        # its new result is stored under a new key (the edited module is an input of the rule)
        assert os.readlink(bob / f"runs/tiny/seed0/round{k:02d}/trained.safetensors") != entries[k]


def test_two_colleagues_filling_one_snakemake_cache_at_once_corrupt_nothing(tmp_path, mnist_dir):
    """Two workspaces run `snakemake --cache` at the same moment against one cache, the same
    jobs in the same order, so they store the same entries at about the same time. Snakemake
    moves each output into a temporary directory inside the cache and renames it into place:
    both runs finish, their results are identical, a third workspace restores every training
    from the cache, and no temporary directory is left behind."""
    cache = tmp_path / "cache"
    cache.mkdir()
    pipes = [Pipeline("snakemake", tmp_path / name, TINY, mnist_dir) for name in ("a", "b", "c")]
    for pipe in pipes:
        pipe.env["SNAKEMAKE_OUTPUT_CACHE"] = str(cache)
    cmd = ["snakemake", "--cores", "1", "--cache"]
    logs = [tmp_path / f"{pipe.path.name}.log" for pipe in pipes[:2]]
    procs = []
    for pipe, log in zip(pipes[:2], logs, strict=True):
        with log.open("w") as out:
            procs.append(subprocess.Popen(cmd, cwd=pipe.path, env=pipe.env, stdout=out, stderr=subprocess.STDOUT))
    codes = [proc.wait(timeout=900) for proc in procs]
    assert codes == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)
    assert digests(pipes[0].path) == digests(pipes[1].path)
    out = run(cmd, pipes[2].path, pipes[2].env)
    log = out.stdout + out.stderr
    for k in range(3):
        assert f"Symlinking output file runs/tiny/seed0/round{k:02d}/trained.safetensors from cache." in log
    assert digests(pipes[2].path) == digests(pipes[0].path)
    assert not [entry.name for entry in cache.iterdir() if entry.is_dir()]  # Snakemake's temporary directories
