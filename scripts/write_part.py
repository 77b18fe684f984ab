"""Rule ms_part: one subband file -> one MS part on scratch."""

from dsa110ms.joblog import job_log
from dsa110ms.mspart import write_part

with job_log(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    write_part(snakemake.input.uvh5, snakemake.output.part)  # noqa: F821
