"""Rule ms_part's command: ``python -m dsa110ms.run.partjob GROUP FILETIME SUBBAND``.

A command, not a ``script:`` (a group has 16 part jobs, and Snakemake's script: costs ~0.25 s of
start-up per job and ~0.7 ms per job when it builds the DAG), and a module, so that the shell
command holds no path at all: only the wildcards, whose constraints allow digits, ``-``, ``T``
and ``:``. Every path is computed from the exported settings
(:func:`dsa110ms.run.jobs.part_command`).
"""

import sys

from dsa110ms import faults
from dsa110ms.run.jobs import part_command

if __name__ == "__main__":
    group, filetime, subband = sys.argv[1:]
    part_command(group, filetime, subband)
    faults.after_part(group, int(subband))  # test faults only (activated by the job)
