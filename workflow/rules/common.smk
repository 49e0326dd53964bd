# Params, the plan, and helpers shared by all rules.
from snakemake.utils import validate

from lth import plan as lth_plan
from lth.params import from_dict, read_yaml

PARAMS_FILE = "params.yaml"

validate(config, "../schemas/params.schema.yaml")
P = from_dict(config, PARAMS_FILE)
if config != read_yaml(PARAMS_FILE):
    raise ValueError(
        f"the Snakemake config differs from {PARAMS_FILE} (--config or --configfile?). "
        f"{PARAMS_FILE} is the one source of truth for both tools: edit it instead."
    )
STAGES = {s.id: s for s in lth_plan.stages(P, PARAMS_FILE)}
SEED_DIR = lth_plan.seed_dir(P, "{seed}")
ROUND_DIR = SEED_DIR + "/round{round}"

wildcard_constraints:
    seed=r"\d+",
    round=r"\d\d",


def stage(name, key=None):
    """The plan's stage for a rule and its wildcards (its deps, command and params)."""
    stage_id = name if key is None else f"{name}@{key}"
    if stage_id not in STAGES:
        raise ValueError(f"{stage_id} is not in the plan for {PARAMS_FILE}")
    return STAGES[stage_id]


def round_stage(name):
    return lambda w: stage(name, f"s{w.seed}-r{w.round}")


def read_params(stage_obj):
    """The values of the params a stage reads, so that changing them reruns it."""
    values = {}
    for key in stage_obj.params:
        value = config
        for part in key.split("."):
            value = value[part]
        values[key] = value
    return values
