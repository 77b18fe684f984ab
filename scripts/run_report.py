"""Rule run_report: the per-group table and quick-look figures of the run report."""

from dsa110ms.run.jobs import report_job

smk = snakemake  # noqa: F821 - injected by Snakemake
report_job(
    groups=smk.params.groups,
    table=smk.output.table,
    plots=smk.output.plots,
    log_path=smk.log[0],
)
