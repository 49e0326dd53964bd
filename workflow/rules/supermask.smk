# Supermasks (Zhou et al.): `untrained` evaluates theta_0 under one-shot masks from round 0's
# training (no training); `supermask` learns a mask over frozen weights. One of each per seed.
UNTRAINED = planned_in("untrained", "{seed_dir}")
SUPERMASK = planned_in("supermask", "{seed_dir}")


rule untrained:
    input:
        UNTRAINED["input"],
    output:
        **UNTRAINED["output"],
    params:
        read=UNTRAINED["read"],
        cmd=UNTRAINED["cmd"],
    resources:
        **DEVICE,
    threads: P.runtime.threads
    # `snakemake --cache` shares it between workflows (README: Sharing results with your team)
    cache: "omit-software"
    log:
        "logs/untrained/{seed_dir}.log",
    conda:
        CONDA_ENV,
    shell:
        "{params.cmd} > {log} 2>&1"


rule supermask:
    input:
        SUPERMASK["input"],
    output:
        **SUPERMASK["output"],
    params:
        read=SUPERMASK["read"],
        cmd=SUPERMASK["cmd"],
    resources:
        **DEVICE,
    threads: P.runtime.threads
    # `snakemake --cache` shares it between workflows (README: Sharing results with your team)
    cache: "omit-software"
    log:
        "logs/supermask/{seed_dir}.log",
    conda:
        CONDA_ENV,
    shell:
        "{params.cmd} > {log} 2>&1"
