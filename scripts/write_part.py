"""Rule ms_part: one subband file -> one MS part on scratch."""

from dsa110ms.joblog import job_log
from dsa110ms.mspart import write_part

smk = snakemake  # noqa: F821 - injected by Snakemake
with job_log(smk.log[0]):
    write_part(
        smk.input.uvh5,
        smk.output.part,
        telescope=smk.params.telescope,
        keep_autocorrelations=smk.params.keep_autocorrelations,
        imaging_columns=smk.params.imaging_columns,
    )
