AGGREGATE = producer("aggregate", lth_outputs.OUTPUTS["aggregate"][0])
FIGURES = producer("figures", lth_plan.figure_files(P)[0])
REPORT = producer("report", REPORT_FILE)


rule aggregate:
    input:
        AGGREGATE.deps,
    output:
        AGGREGATE.outs,  # the stability tables only when an experiment asks for them
    params:
        read=read_params(AGGREGATE),
        cmd=AGGREGATE.cmd,
    log:
        "logs/aggregate.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule figures:
    input:
        FIGURES.deps,
    output:
        [report(f, category="Figures") for f in lth_plan.figure_files(P)],
    params:
        read=read_params(FIGURES),
        cmd=FIGURES.cmd,
    log:
        "logs/figures.log",
    shell:
        "{params.cmd} > {log} 2>&1"


rule report:
    input:
        REPORT.deps,
    output:
        REPORT_FILE,
    params:
        read=read_params(REPORT),
        cmd=REPORT.cmd,
    log:
        "logs/report.log",
    shell:
        "{params.cmd} > {log} 2>&1"
