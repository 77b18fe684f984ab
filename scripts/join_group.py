"""Rule concat: join a group's parts, validate, publish, remove the group's scratch."""

from dsa110ms.joblog import job_log
from dsa110ms.join import join_group
from dsa110ms.scratch import remove_if_present

smk = snakemake  # noqa: F821 - injected by Snakemake
with job_log(smk.log[0]):
    join_group(
        smk.wildcards.group,
        smk.input.parts,
        smk.output.ms,
        instance=smk.params.instance,
        contiguous=smk.params.complete,
        spw_layout=smk.params.spw_layout,
        field_per_integration=smk.params.telescope == "dsa110",
        attempt=smk.resources.attempt,
        fail_attempts=smk.params.fail_attempts,
    )
    remove_if_present(smk.params.group_scratch, smk.params.scratch_root)
