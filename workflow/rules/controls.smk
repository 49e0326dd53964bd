# Controls branch off every pruned round and reuse its mask (no retraining of the lineage):
# reinit = the ticket's mask with a fresh init; shuffle = a random mask of the same
# per-layer sparsity (then reset to theta_0 and trained like a ticket).
REINIT = planned("reinit", "{round_dir}/reinit/ticket.safetensors")
SHUFFLE = planned("shuffle", "{round_dir}/random/mask.safetensors")


rule reinit:
    input:
        REINIT["input"],
    output:
        ticket="{round_dir}/reinit/ticket.safetensors",
    wildcard_constraints:
        round_dir=r"runs/[^/]+/seed\d+/round(?!00)\d\d",
    params:
        read=REINIT["read"],
        cmd=REINIT["cmd"],
    log:
        "logs/reinit/{round_dir}.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule shuffle:
    input:
        SHUFFLE["input"],
    output:
        mask="{round_dir}/random/mask.safetensors",
        sparsity="{round_dir}/random/sparsity.json",
    wildcard_constraints:
        round_dir=r"runs/[^/]+/seed\d+/round(?!00)\d\d",
    params:
        cmd=SHUFFLE["cmd"],
    log:
        "logs/shuffle/{round_dir}.log",
    shell:
        "{params.cmd} > {log} 2>&1"
