"""Rule concat: join a group's parts, validate, publish, remove the group's scratch."""

from dsa110ms.run.jobs import join_job

smk = snakemake  # noqa: F821 - injected by Snakemake
join_job(
    group=smk.wildcards.group,
    template=smk.input.template,
    parts=list(smk.input.parts),
    log_path=smk.log[0],
    sources=smk.params.sources,
    contiguous=smk.params.complete,
    attempt=smk.resources.attempt,
)
