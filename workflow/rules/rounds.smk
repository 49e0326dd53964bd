# One lineage per seed; each round k >= 1 is prune -> reset -> train, round 0 trains theta_0.

rule train:
    input:
        lambda w: round_stage("train")(w).deps,
    output:
        trained=ROUND_DIR + "/trained.safetensors",
        curve=ROUND_DIR + "/curve.csv",
        metrics=ROUND_DIR + "/metrics.json",
    params:
        read=lambda w: read_params(round_stage("train")(w)),
        cmd=lambda w: round_stage("train")(w).cmd,
    threads: P.train.threads
    log:
        "logs/train/seed{seed}-round{round}.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule prune:
    input:
        lambda w: round_stage("prune")(w).deps,
    output:
        mask=ROUND_DIR + "/mask.safetensors",
        sparsity=ROUND_DIR + "/sparsity.json",
    wildcard_constraints:
        round=r"(?!00)\d\d",
    params:
        read=lambda w: read_params(round_stage("prune")(w)),
        cmd=lambda w: round_stage("prune")(w).cmd,
    log:
        "logs/prune/seed{seed}-round{round}.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule reset:
    input:
        lambda w: round_stage("reset")(w).deps,
    output:
        ticket=ROUND_DIR + "/ticket.safetensors",
    params:
        cmd=lambda w: round_stage("reset")(w).cmd,
    log:
        "logs/reset/seed{seed}-round{round}.log",
    shell:
        "{params.cmd} > {log} 2>&1"
