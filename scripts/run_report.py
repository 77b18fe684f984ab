"""Rule run_report: the per-group table and quick-look figures of the run report."""

from dsa110ms.run.jobstart import quiet_ctrl_c_while_starting

quiet_ctrl_c_while_starting()  # before the imports below

from dsa110ms.run.jobs import report_job  # noqa: E402

smk = snakemake  # noqa: F821 - injected by Snakemake
report_job(
    groups=smk.params.groups,
    table=smk.output.table,
    plots=smk.output.plots,
    log_path=smk.log[0],
)
