# Instability analysis (Frankle et al. 2020): two copies of a round's training from
# iteration k, and the path between them. One job per experiment, seed, round and k, under
# runs/<experiment>/seed<s>/stability/round<rr>/k<k>/; planned only for experiments with `stability`.
STABILITY = planned_in("stability", "{stability_dir}")


rule stability:
    input:
        STABILITY["input"],
    output:
        **STABILITY["output"],
    wildcard_constraints:
        stability_dir=r"runs/[^/]+/seed\d+/stability/round\d\d/k\d+",
    params:
        read=STABILITY["read"],
        cmd=STABILITY["cmd"],
    resources:
        **DEVICE,
    threads: P.runtime.threads
    # `snakemake --cache` shares it between workflows (README: Sharing results with your team)
    cache: "omit-software"
    log:
        "logs/stability/{stability_dir}.log",
    conda:
        CONDA_ENV,
    shell:
        "{params.cmd} > {log} 2>&1"
