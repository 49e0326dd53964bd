DATA = planned("data", lth_plan.prepared("{dataset}"))
INIT = planned_in("init", "{seed_dir}")


rule data:
    input:
        DATA["input"],
    output:
        raw=directory(lth_plan.raw_dir("{dataset}")),
        prepared=lth_plan.prepared("{dataset}"),
    params:
        read=DATA["read"],
        cmd=DATA["cmd"],
    log:
        "logs/data/{dataset}.log",
    conda:
        CONDA_ENV,
    shell:
        "{params.cmd} > {log} 2>&1"


rule init:
    input:
        INIT["input"],
    output:
        **INIT["output"],
    params:
        read=INIT["read"],
        cmd=INIT["cmd"],
    log:
        "logs/init/{seed_dir}.log",
    conda:
        CONDA_ENV,
    shell:
        "{params.cmd} > {log} 2>&1"
