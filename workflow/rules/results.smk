AGGREGATE = producer("aggregate", f"{lth_plan.RESULTS}/{lth_outputs.ROUNDS}")
FIGURES = producer("figures", lth_plan.figure_files(P)[0])
REPORT = producer("report", REPORT_FILE)


rule aggregate:
    input:
        AGGREGATE.deps,
    output:
        [*AGGREGATE.outs, *AGGREGATE.metrics],  # the stability tables only when an experiment asks for them
    params:
        read=read_params(AGGREGATE),
        cmd=AGGREGATE.cmd,
    log:
        "logs/aggregate.log",
    conda:
        CONDA_ENV,
    shell:
        "{params.cmd} > {log} 2>&1"


rule figures:
    input:
        FIGURES.deps,
    output:
        [report(path, caption=caption(spec.kind), category="Figures", subcategory=spec.dataset)
         for spec, path in lth_plan.figure_outputs(P)],
    params:
        read=read_params(FIGURES),
        cmd=FIGURES.cmd,
    log:
        "logs/figures.log",
    conda:
        CONDA_ENV,
    shell:
        "{params.cmd} > {log} 2>&1"


rule report:
    input:
        REPORT.deps,
    output:
        report(REPORT_FILE, caption="../report/report.rst", category="Report"),
    params:
        read=read_params(REPORT),
        cmd=REPORT.cmd,
    log:
        "logs/report.log",
    conda:
        CONDA_ENV,
    shell:
        "{params.cmd} > {log} 2>&1"
