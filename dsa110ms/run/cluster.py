"""Which cluster (SLURM) job this process runs in, if any."""

from __future__ import annotations

import os

#: Set by SLURM in every process of a job (the plugin clears the submitting shell's SLURM_*
#: variables before ``srun``, so inside a job it is always that job's id).
CLUSTER_JOB_ENV = "SLURM_JOB_ID"


def cluster_job_id(environ=os.environ) -> str | None:
    """The cluster job this process runs in, or None outside one."""
    return environ.get(CLUSTER_JOB_ENV) or None
