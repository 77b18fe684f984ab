"""Rule simulate: write simulated DSA-110 groups into the input directory."""

from dsa110ms.run.joblog import job_log
from dsa110ms.simulate import simulate_to_record

with job_log(snakemake.log[0]):  # noqa: F821 - injected by Snakemake
    simulate_to_record(snakemake.params.spec, snakemake.output.record)  # noqa: F821
