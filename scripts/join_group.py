"""Rule concat: join a group's parts, validate, publish, remove the group's scratch."""

from dsa110ms.run.jobstart import one_thread_if_told_none, quiet_ctrl_c_while_starting

# before numpy, casacore and casatools are loaded (rule concat has threads: 0)
one_thread_if_told_none()
quiet_ctrl_c_while_starting()

from dsa110ms.run.jobs import join_job  # noqa: E402

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
