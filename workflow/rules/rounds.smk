# A lineage per experiment and seed: round 0 trains theta_0; each round k >= 1 is
# prune -> reset -> train. Directories: runs/<experiment>/seed<s>/round<kk>[/reinit|/random].
TRAIN = planned("train", "{train_dir}/trained.safetensors")
PRUNE = planned("prune", "{round_dir}/mask.safetensors")
RESET = planned("reset", "{reset_dir}/ticket.safetensors")


rule train:
    input:
        TRAIN["input"],
    output:
        trained="{train_dir}/trained.safetensors",
        rewind="{train_dir}/rewind.safetensors",
        curve="{train_dir}/curve.csv",
        metrics="{train_dir}/metrics.json",
    wildcard_constraints:
        train_dir=r"runs/[^/]+/seed\d+/round\d\d(/reinit|/random)?",
    params:
        read=TRAIN["read"],
        cmd=TRAIN["cmd"],
    resources:
        **GPU,
    threads: P.runtime.threads
    # `snakemake --cache` shares it between workflows (README: Sharing results with your team)
    cache: "omit-software"
    log:
        "logs/train/{train_dir}.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule prune:
    input:
        PRUNE["input"],
    output:
        mask="{round_dir}/mask.safetensors",
        sparsity="{round_dir}/sparsity.json",
    wildcard_constraints:
        round_dir=r"runs/[^/]+/seed\d+/round(?!00)\d\d",
    params:
        read=PRUNE["read"],
        cmd=PRUNE["cmd"],
    log:
        "logs/prune/{round_dir}.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule reset:
    input:
        RESET["input"],
    output:
        ticket="{reset_dir}/ticket.safetensors",
    wildcard_constraints:
        reset_dir=r"runs/[^/]+/seed\d+/round(?!00)\d\d(/random)?",
    params:
        read=RESET["read"],
        cmd=RESET["cmd"],
    log:
        "logs/reset/{reset_dir}.log",
    shell:
        "{params.cmd} > {log} 2>&1"
