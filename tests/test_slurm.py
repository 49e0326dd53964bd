"""The workflow on a real single-node SLURM cluster, brought up from Debian's packages.

The cluster (munged, slurmctld, slurmd) is started by PID and torn down by PID; its
state lives in a temporary directory. Its configuration goes to the default place,
/etc/slurm/slurm.conf (an existing one is put back afterwards): the SLURM executor's job
steps drop SLURM_CONF from their environment, so `srun` inside a job finds only that. On a machine where SLURM
cannot be installed or started (not root, no Debian) the test is skipped, except under CI
(CI=true), where it must run.
"""

import copy
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import TINY, Pipeline, digests, run

pytestmark = pytest.mark.pipeline
PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
FAST_POLLING = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
                "--seconds-between-status-checks", "2"]


def unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"SLURM must run in CI: {reason}")
    pytest.skip(f"SLURM cannot start here: {reason}")


def install() -> None:
    if all(shutil.which(p) for p in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        unavailable("SLURM is not installed, and installing it needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
    result = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES], env=env,
                            capture_output=True, text=True)
    if result.returncode:
        unavailable(f"apt-get install {' '.join(PACKAGES)} failed: {result.stderr[-500:]}")


def slurm_conf(d: Path) -> str:
    host = socket.gethostname().split(".")[0]
    mem_mb = int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20)
    return f"""\
ClusterName=lthtest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={mem_mb} State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
SlurmdTimeout=30
JobRequeue=0
ReturnToService=2
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
"""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running cluster; yields the environment to reach it with."""
    install()
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    if os.geteuid() != 0:
        unavailable("starting SLURM daemons and writing /etc/slurm/slurm.conf need root")
    conf = Path("/etc/slurm/slurm.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    backup = conf.read_bytes() if conf.exists() else None
    conf.write_text(slurm_conf(d))
    env = dict(os.environ)
    started: list[int] = []
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode:
        Path("/run/munge").mkdir(exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)  # it forks
        started.append(int(Path("/run/munge/munged.pid").read_text()))
    host = socket.gethostname().split(".")[0]
    daemons = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for cmd in (["slurmctld", "-D", "-c", "-i"], ["slurmd", "-D", "-N", host])]
    started += [p.pid for p in daemons]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
            if state.strip() == "idle":
                break
            time.sleep(0.5)
        else:
            unavailable(f"the node never became idle; slurmctld log:\n{(d / 'slurmctld.log').read_text()[-1000:]}")
        yield env
    finally:
        for pid in reversed(started):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in daemons:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        if backup is None:
            conf.unlink(missing_ok=True)
        else:
            conf.write_bytes(backup)


def two_trials_two_rounds() -> dict:
    params = copy.deepcopy(TINY)
    params["seeds"] = [0, 1]
    return params


def slurm_run(pipe: Pipeline, check: bool = True):
    cmd = ["timeout", "-k", "10", "900", "snakemake", "--workflow-profile", "workflow/profiles/slurm",
           "--jobs", "4", *FAST_POLLING]
    return run(cmd, pipe.path, pipe.env, check=check)


def test_the_workflow_runs_on_slurm_and_matches_a_local_run(tmp_path, mnist_dir, slurm):
    params = two_trials_two_rounds()
    local = Pipeline("snakemake", tmp_path / "local", params, mnist_dir)
    start = time.monotonic()
    local_jobs = local.repro()
    local_s = time.monotonic() - start
    cluster = Pipeline("snakemake", tmp_path / "cluster", params, mnist_dir)
    start = time.monotonic()
    result = slurm_run(cluster)
    slurm_s = time.monotonic() - start
    log = result.stdout + result.stderr
    assert "Job " in log and "has been submitted with SLURM jobid" in log
    assert {"train@tiny-s1-r02", "train@tiny-s0-r02"} <= local_jobs
    assert digests(cluster.path) == digests(local.path)  # byte-identical artifacts
    print(f"\ntiny workflow (2 trials x 2 rounds): local snakemake --cores 2 {local_s:.0f} s, "
          f"SLURM {slurm_s:.0f} s")


def test_a_failing_job_fails_the_run_with_a_clear_message(tmp_path, mnist_dir, slurm):
    params = two_trials_two_rounds()
    pipe = Pipeline("snakemake", tmp_path / "failing", params, mnist_dir)
    empty = tmp_path / "no-mnist-here"
    empty.mkdir()
    pipe.set("data.local_dirs", {"mnist": str(empty)})  # the data stage cannot find MNIST
    result = slurm_run(pipe, check=False)
    log = result.stdout + result.stderr
    assert result.returncode == 1
    assert "Error in rule data" in log
    assert "SLURM status is: 'FAILED'" in log
    assert "logs/data/mnist.log" in log  # where the user finds the stage's own error
    assert not list((pipe.path / "runs").rglob("metrics.json"))  # nothing downstream ran
