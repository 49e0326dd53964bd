# Params, the plan, and helpers shared by all rules.
from lth import outputs as lth_outputs
from lth import plan as lth_plan
import os
from pathlib import Path, PurePath

from lth.params import PARAMS_DIGEST_VARIABLE, from_dict, read_source
from snakemake.logging import logger
from snakemake.utils import validate

PARAMS_FILE = "params.yaml"

# The stages read params.yaml themselves, so the config must be exactly that file: refuse
# --config and --configfile overrides (naming the one given) before judging any value.
PARAMS_READ, PARAMS_SHA256 = read_source(PARAMS_FILE)
if config != PARAMS_READ:
    given = [f"--configfile {' '.join(map(str, workflow.config_settings.configfiles))}"
             if workflow.config_settings.configfiles else "",
             f"--config {' '.join(f'{k}=...' for k in workflow.config_settings.config)}"
             if workflow.config_settings.config else ""]
    raise ValueError(
        f"{' and '.join(g for g in given if g) or 'the Snakemake config'} would change the params of "
        f"{PARAMS_FILE}, which the stages read themselves: {PARAMS_FILE} is the one source of truth "
        "for both tools. Edit it instead, and run snakemake without these options."
    )
# Validated against workflow/schemas/params.schema.yaml by lth itself, so that Snakemake,
# dvc (through the stages) and `lth check` reject bad params with the same words.
P = from_dict(config, PARAMS_FILE)
validate(config, "../schemas/params.schema.yaml")  # Snakemake's own check, the same schema (passes when lth's does)
# Jobs run `lth` commands that read params.yaml again: they refuse to run if the file is
# no longer the one this workflow was planned from (an edit in the middle of a run). Jobs
# on a cluster inherit the value from the submitting process (setdefault).
os.environ.setdefault(PARAMS_DIGEST_VARIABLE, PARAMS_SHA256)
# The software of every rule (`snakemake --use-conda`), relative to the rule files
CONDA_ENV = "../envs/lth.yaml"


def _real_params_changes_only():
    """Snakemake 9's `--list-changes params` lists a file of every job, changed or not: a
    ParamsChange without changes keeps the files it was merged with. Report real changes only
    (rerun decisions look at the change's truth value, which this keeps)."""
    from snakemake import persistence

    owner = getattr(persistence, "PersistenceBase", None)  # Snakemake 9
    listed = getattr(owner, "params_changed", None)
    if listed is None or getattr(listed, "real_changes_only", False) or not hasattr(persistence, "NO_PARAMS_CHANGE"):
        return

    def params_changed(self, job, file=None):
        change = listed(self, job, file)
        return change if change else persistence.NO_PARAMS_CHANGE

    params_changed.real_changes_only = True
    owner.params_changed = params_changed


_real_params_changes_only()

# Every planned stage, found by its rule name and one of its output files.
PRODUCER = {(s.name, out): s for s in lth_plan.stages(P, PARAMS_FILE) for out in s.outs + s.metrics}

wildcard_constraints:
    dataset=r"[a-z0-9_]+",
    seed_dir=r"runs/[^/]+/seed\d+",


def producer(rule_name, output):
    """The plan's stage for a rule that makes `output` (its deps, command and params)."""
    if (rule_name, output) not in PRODUCER:
        raise ValueError(f"{output}: no '{rule_name}' stage makes it in the plan for {PARAMS_FILE}")
    return PRODUCER[(rule_name, output)]


def read_params(stage):
    """The values of the params a stage reads, so that changing them reruns it."""
    values = {}
    for key in stage.params:
        value = config
        for part in key.split("."):
            value = value[part]
        values[key] = value
    return values


def planned(rule_name, pattern):
    """Input, params and command of the planned stage that makes `pattern` (wildcards filled)."""
    stage = lambda w: producer(rule_name, pattern.format(**w))
    return {"input": lambda w: stage(w).deps,
            "read": lambda w: read_params(stage(w)),
            "cmd": lambda w: stage(w).cmd}


def planned_in(rule_name, directory):
    """As `planned`, with the rule's named outputs: the files that lth.outputs says its stage
    writes, under `directory` (a pattern), each named by its stem."""
    output = {PurePath(end).stem: f"{directory}/{end}" for end in lth_outputs.OUTPUTS[rule_name]}
    return planned(rule_name, next(iter(output.values()))) | {"output": output}


REPORT_FILE = f"{lth_plan.RESULTS}/{lth_outputs.REPORT}"


def caption(kind):
    """`snakemake --report`'s caption of a figure: workflow/report/<kind>.rst, or a general one."""
    specific = Path(workflow.basedir) / "report" / f"{kind}.rst"
    return f"../report/{kind}.rst" if specific.exists() else "../report/figure.rst"


# The resources of the rules that compute on the device (lth_plan.DEVICE_STAGES): one of
# `trainings` each, and a GPU on a cluster when the params ask for CUDA.
DEVICE = lth_plan.device_resources(P)
# How many of them run at once on this machine (runtime.trainings_per_device; docs/operations.md):
# the workflow's own limit on `trainings`, unless `--resources trainings=N` gave one. Not for
# executors that submit jobs elsewhere (SLURM): there each job asks the cluster for its share.
# (Snakemake documents no way for a workflow to set a global resource; register_resource is
# what it uses itself for the mutexes of `update()` files.)
TRAININGS_AT_ONCE = lth_plan.trainings_at_once(P) if workflow.local_exec else None
if TRAININGS_AT_ONCE and lth_plan.TRAININGS not in workflow.global_resources:
    workflow.register_resource(lth_plan.TRAININGS, TRAININGS_AT_ONCE)
    logger.info(f"At most {TRAININGS_AT_ONCE} of {', '.join(lth_plan.DEVICE_STAGES)} at once on the device "
                f"({lth_plan.TRAININGS}={TRAININGS_AT_ONCE}: runtime.trainings_per_device in {PARAMS_FILE}"
                f"{'' if P.runtime.trainings_per_device else ', by default 1 on CUDA'}; "
                f"--resources {lth_plan.TRAININGS}=N overrides it)")
