rule aggregate:
    input:
        stage("aggregate").deps,
    output:
        rounds=lth_plan.results_dir(P) + "/rounds.csv",
        curves=lth_plan.results_dir(P) + "/curves.csv",
    params:
        read=read_params(stage("aggregate")),
        cmd=stage("aggregate").cmd,
    log:
        "logs/aggregate.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule figures:
    input:
        stage("figures").deps,
    output:
        [report(f, category="Figures") for f in lth_plan.figure_files(P)],
    params:
        read=read_params(stage("figures")),
        cmd=stage("figures").cmd,
    log:
        "logs/figures.log",
    shell:
        "{params.cmd} > {log} 2>&1"
