DATA = planned("data", "data/prepared/{dataset}.safetensors")
INIT = planned("init", "{seed_dir}/theta0.safetensors")


rule data:
    input:
        DATA["input"],
    output:
        raw=directory("data/raw/{dataset}"),
        prepared="data/prepared/{dataset}.safetensors",
    params:
        read=DATA["read"],
        cmd=DATA["cmd"],
    log:
        "logs/data/{dataset}.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule init:
    input:
        INIT["input"],
    output:
        theta0="{seed_dir}/theta0.safetensors",
        mask="{seed_dir}/round00/mask.safetensors",
        sparsity="{seed_dir}/round00/sparsity.json",
    params:
        read=INIT["read"],
        cmd=INIT["cmd"],
    log:
        "logs/init/{seed_dir}.log",
    shell:
        "{params.cmd} > {log} 2>&1"
