"""Rule ms_template: one subband file -> the group's template MS on scratch."""

from dsa110ms.run.jobs import template_job_forked

smk = snakemake  # noqa: F821 - injected by Snakemake
template_job_forked(
    uvh5=smk.input.uvh5,
    template=smk.output.template,
    group=smk.wildcards.group,
    log_path=smk.log[0],
)
