# A lineage per experiment and seed: round 0 trains theta_0; each round k >= 1 is
# prune -> reset -> train. Directories: runs/<experiment>/seed<s>/round<kk>[/reinit|/random].
TRAIN = planned_in("train", "{train_dir}")
PRUNE = planned_in("prune", "{round_dir}")
RESET = planned_in("reset", "{reset_dir}")


rule train:
    input:
        TRAIN["input"],
    output:
        **TRAIN["output"],
    wildcard_constraints:
        train_dir=r"runs/[^/]+/seed\d+/round\d\d(/reinit|/random)?",
    params:
        read=TRAIN["read"],
        cmd=TRAIN["cmd"],
    resources:
        **DEVICE,
    threads: P.runtime.threads
    # `snakemake --cache` shares it between workflows (README: Sharing results with your team)
    cache: "omit-software"
    log:
        "logs/train/{train_dir}.log",
    conda:
        CONDA_ENV,
    shell:
        "{params.cmd} > {log} 2>&1"


rule prune:
    input:
        PRUNE["input"],
    output:
        **PRUNE["output"],
    wildcard_constraints:
        round_dir=r"runs/[^/]+/seed\d+/round(?!00)\d\d",
    params:
        read=PRUNE["read"],
        cmd=PRUNE["cmd"],
    log:
        "logs/prune/{round_dir}.log",
    conda:
        CONDA_ENV,
    shell:
        "{params.cmd} > {log} 2>&1"


rule reset:
    input:
        RESET["input"],
    output:
        **RESET["output"],
    wildcard_constraints:
        reset_dir=r"runs/[^/]+/seed\d+/round(?!00)\d\d(/random)?",
    params:
        read=RESET["read"],
        cmd=RESET["cmd"],
    log:
        "logs/reset/{reset_dir}.log",
    conda:
        CONDA_ENV,
    shell:
        "{params.cmd} > {log} 2>&1"
