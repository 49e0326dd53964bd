# Controls branch off every pruned round and reuse its mask (no retraining of the lineage):
# reinit = the ticket's mask with a fresh init; shuffle = a random mask of the same
# per-layer sparsity (then reset to theta_0 and trained like a ticket).
REINIT = planned_in("reinit", "{round_dir}")
SHUFFLE = planned_in("shuffle", "{round_dir}")


rule reinit:
    input:
        REINIT["input"],
    output:
        **REINIT["output"],
    wildcard_constraints:
        round_dir=r"runs/[^/]+/seed\d+/round(?!00)\d\d",
    params:
        read=REINIT["read"],
        cmd=REINIT["cmd"],
    log:
        "logs/reinit/{round_dir}.log",
    conda:
        CONDA_ENV,
    shell:
        "{params.cmd} > {log} 2>&1"


rule shuffle:
    input:
        SHUFFLE["input"],
    output:
        **SHUFFLE["output"],
    wildcard_constraints:
        round_dir=r"runs/[^/]+/seed\d+/round(?!00)\d\d",
    params:
        cmd=SHUFFLE["cmd"],
    log:
        "logs/shuffle/{round_dir}.log",
    conda:
        CONDA_ENV,
    shell:
        "{params.cmd} > {log} 2>&1"
