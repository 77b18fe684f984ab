"""Rule ms_part: one subband file -> one MS part on scratch."""

from dsa110ms.jobs import part_job

smk = snakemake  # noqa: F821 - injected by Snakemake
part_job(
    uvh5=smk.input.uvh5,
    part=smk.output.part,
    group=smk.wildcards.group,
    subband=int(smk.wildcards.subband),
    log_path=smk.log[0],
    options=smk.params.options,
)
