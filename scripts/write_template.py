"""Rule ms_template: one subband file -> the group's template MS on scratch."""

from dsa110ms.run.jobstart import quiet_ctrl_c_while_starting

quiet_ctrl_c_while_starting()  # before the imports below

from dsa110ms.run.jobs import template_job_forked  # noqa: E402

smk = snakemake  # noqa: F821 - injected by Snakemake
template_job_forked(
    uvh5=smk.input.uvh5,
    template=smk.output.template,
    group=smk.wildcards.group,
    log_path=smk.log[0],
)
