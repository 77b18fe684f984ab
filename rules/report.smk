# The run report (`snakemake --report report.html`): a per-group table and quick-look figures
# made from the groups' records and the run's metrics (dsa110ms/observe/report.py).


rule run_report:
    input:
        published=lambda wc: RUN.all_published(),
    output:
        table=report(
            RUN.report_table(),
            caption="../docs/report/groups.rst",
            category="Groups",
        ),
        plots=report(
            directory(RUN.report_plots()),
            patterns=["{name}.png"],
            caption="../docs/report/plots.rst",
            category="Quick-look",
        ),
    log:
        RUN.log_pattern("run_report.log"),
    localrule: True
    conda:
        "../envs/dsa110ms.yaml"
    params:
        groups=lambda wc: RUN.groups(),
    script:
        "../scripts/run_report.py"
