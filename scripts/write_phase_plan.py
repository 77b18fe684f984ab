"""Rule phase_plan: one subband file -> the group's phase plan on scratch."""

from dsa110ms.run.jobs import phase_plan_job

smk = snakemake  # noqa: F821 - injected by Snakemake
phase_plan_job(
    uvh5=smk.input.uvh5,
    plan=smk.output.plan,
    group=smk.wildcards.group,
    log_path=smk.log[0],
)
