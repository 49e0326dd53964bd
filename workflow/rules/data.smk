rule data:
    input:
        lambda w: stage("data").deps,
    output:
        raw=directory(lth_plan.raw_dir(P)),
        prepared=lth_plan.prepared(P),
    params:
        read=read_params(stage("data")),
        cmd=stage("data").cmd,
    log:
        "logs/data.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule init:
    input:
        lambda w: stage("init", f"s{w.seed}").deps,
    output:
        theta0=SEED_DIR + "/theta0.safetensors",
        mask=SEED_DIR + "/round00/mask.safetensors",
        sparsity=SEED_DIR + "/round00/sparsity.json",
    params:
        read=lambda w: read_params(stage("init", f"s{w.seed}")),
        cmd=lambda w: stage("init", f"s{w.seed}").cmd,
    log:
        "logs/init/seed{seed}.log",
    shell:
        "{params.cmd} > {log} 2>&1"
