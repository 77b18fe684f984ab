"""Rule ms_part's command: ``python -m dsa110ms.run.partjob GROUP FILETIME SUBBAND``.

A command, not a ``script:`` (a group has 16 part jobs, and Snakemake's script: costs ~0.25 s of
start-up per job and ~0.7 ms per job when it builds the DAG), and a module, so that the shell
command holds no path at all: only the wildcards, whose constraints allow digits, ``-``, ``T``
and ``:``. Every path is computed from the exported settings
(:func:`dsa110ms.run.jobs.part_command`).

The part is written by a forked child of the job's process, which waits for it
(:mod:`dsa110ms.run.forked`): a child killed by a signal (SIGKILL from the kernel's
out-of-memory killer leaves no log line and no event) is reported by this process in one line,
in the part's log, on stderr and in the metrics, so the summary says what happened to the group
instead of "not run".
"""

import sys

from dsa110ms.run.jobstart import quiet_ctrl_c_while_starting

quiet_ctrl_c_while_starting()  # before the imports below (~0.3 s of each part job's ~0.5 s)

from dsa110ms import faults, paths  # noqa: E402
from dsa110ms.run.forked import run_job_forked  # noqa: E402
from dsa110ms.run.jobs import JobContext, part_command  # noqa: E402


def main(argv: list[str]) -> int:
    group, filetime, subband = argv

    def work() -> None:
        part_command(group, filetime, subband)
        faults.after_part(group, int(subband))  # test faults only (activated by the job)

    context = JobContext.current()
    settings = context.settings
    return run_job_forked(
        work,
        "part",
        group=group,
        uvh5=paths.input_file(settings.input_dir, filetime, subband),
        log_path=paths.part_log(settings.log_dir, group, subband, filetime),
        metrics_dir=settings.metrics_dir,
        scratch=context.layout.group_dir(group),
        subband=int(subband),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
