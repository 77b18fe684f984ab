"""Rule ms_part's command: ``python -m dsa110ms.run.partjob GROUP FILETIME SUBBAND``.

A command, not a ``script:`` (a group has 16 part jobs, and Snakemake's script: costs ~0.25 s of
start-up per job and ~0.7 ms per job when it builds the DAG), and a module, so that the shell
command holds no path at all: only the wildcards, whose constraints allow digits, ``-``, ``T``
and ``:``. Every path is computed from the exported settings
(:func:`dsa110ms.run.jobs.part_command`).

The part is written by a forked child of the job's process, which waits for it: a child killed
by a signal (SIGKILL from the kernel's out-of-memory killer leaves no log line and no event)
is reported by this process in one line, in the part's log, on stderr and in the metrics, so
the summary says what happened to the group instead of "not run".
"""

import os
import signal
import sys

from dsa110ms import faults, paths
from dsa110ms.observe import metrics
from dsa110ms.run.jobs import JobContext, part_command
from dsa110ms.run.runwatch import RUN_ENV


def killed_reason(signum: int) -> str:
    """What a job killed by ``signum`` tells: SIGKILL comes from the out-of-memory killer unless
    a person sent it."""
    name = signal.Signals(signum).name
    likely = " (likely out of memory: the kernel's OOM killer sends it)" if signum == 9 else ""
    return f"killed by signal {signum}, {name}{likely}"


def run_alive(environ=os.environ) -> bool:
    """Whether the Snakemake process of the run still lives (a dead run kills its jobs)."""
    pid = environ.get(RUN_ENV, "").partition("@")[0]
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def report_killed(group: str, filetime: str, subband: str, signum: int) -> None:
    """One line in the part's log and on stderr, and a failed ``part`` event (the summary's
    reason for the group)."""
    settings = JobContext.current().settings
    uvh5 = paths.input_file(settings.input_dir, filetime, subband)
    line = f"part of {uvh5}: {killed_reason(signum)}"
    log_path = paths.part_log(settings.log_dir, group, subband, filetime)
    with open(log_path, "a") as log:
        log.write(f"ERROR {line}\n")
    print(f"dsa110ms: error: {line}", file=sys.stderr, flush=True)
    metrics.configure(settings.metrics_dir)
    metrics.emit(
        "part", group=group, subband=int(subband), file=uvh5, ok=False, error=killed_reason(signum)
    )


def main(argv: list[str]) -> int:
    group, filetime, subband = argv
    child = os.fork()
    if child == 0:
        code = 1
        try:
            part_command(group, filetime, subband)
            faults.after_part(group, int(subband))  # test faults only (activated by the job)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    # stop signals go to the child, which stops with one line; this process waits for it
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda s, f: os.kill(child, s))
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if run_alive():
            report_killed(group, filetime, subband, signum)
        return 128 + signum
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
