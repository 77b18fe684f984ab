"""A job's work in a forked child that its process waits for, so that a death no Python code
sees (SIGKILL from the kernel's out-of-memory killer, SIGABRT from casacore on a write error)
is still told in one line: in the job's log, on stderr and as the group's failed event in the
metrics, so that the summary says what happened instead of "not run".

Used by the part jobs (:mod:`dsa110ms.run.partjob`) and the template job
(:func:`dsa110ms.run.jobs.template_job_forked`); the join has its own child
(:mod:`dsa110ms.ms.join_group`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from dsa110ms.observe import metrics
from dsa110ms.run.joblog import STOP_SIGNALS
from dsa110ms.run.runwatch import RUN_ENV


def run_forked(work: Callable[[], None]) -> tuple[int, int | None]:
    """Run ``work`` in a forked child and wait for it; stop signals (Ctrl-C, SIGTERM, SIGHUP)
    are passed on to the child, which stops with its own line. Returns the child's exit code
    and the signal that killed it (None if it exited)."""
    child = os.fork()
    if child == 0:
        code = 1
        try:
            work()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def forward(signum, frame):
        with contextlib.suppress(ProcessLookupError):  # the child has ended and been reaped
            os.kill(child, signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, forward)
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status), os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status), None


def run_job_forked(
    work: Callable[[], None],
    kind: str,
    *,
    group: str,
    uvh5: str,
    log_path: str | os.PathLike,
    metrics_dir: str | None,
    scratch: str | os.PathLike | None = None,
    **fields,
) -> int:
    """A ``kind`` job's ``work`` in a forked child (:func:`run_forked`); a child killed by a
    signal while the run lives is told in one line (:func:`report_killed`). Returns the
    child's exit code."""
    code, signum = run_forked(work)
    if signum is not None and run_alive():
        report_killed(
            kind,
            group=group,
            uvh5=uvh5,
            log_path=log_path,
            signum=signum,
            metrics_dir=metrics_dir,
            scratch=scratch,
            **fields,
        )
    return code


def killed_reason(signum: int, scratch: str | os.PathLike | None = None) -> str:
    """What a job killed by ``signum`` tells: SIGKILL comes from the out-of-memory killer unless
    a person sent it; SIGABRT from casacore, which aborts on a write error (then the free space
    of ``scratch`` says whether it was full)."""
    name = signal.Signals(signum).name
    reason = f"killed by signal {signum}, {name}"
    if signum == signal.SIGKILL:
        reason += " (likely out of memory: the kernel's OOM killer sends it)"
    elif signum == signal.SIGABRT:
        reason += " (casacore aborts on a write error"
        if scratch is not None and Path(scratch).exists():
            free_mb = shutil.disk_usage(scratch).free / 1e6
            full = "out of scratch space? " if free_mb < 1.0 else ""
            reason += f"; {full}{free_mb:.1f} MB free on scratch {scratch}"
        reason += ")"
    return reason


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


def report_killed(
    kind: str,
    *,
    group: str,
    uvh5: str,
    log_path: str | os.PathLike,
    signum: int,
    metrics_dir: str | None,
    scratch: str | os.PathLike | None = None,
    **fields,
) -> None:
    """One line in the job's log and on stderr, and a failed ``kind`` event (the summary's
    reason for the group; a stop signal marks the group stopped, not failed on its input)."""
    reason = killed_reason(signum, scratch)
    line = f"{kind} of {uvh5}: {reason}"
    with open(log_path, "a") as log:
        log.write(f"ERROR {line}\n")
    print(f"dsa110ms: error: {line}", file=sys.stderr, flush=True)
    if signum in STOP_SIGNALS:
        fields["stopped"] = signal.Signals(signum).name
    metrics.configure(metrics_dir)
    metrics.emit(kind, group=group, file=uvh5, ok=False, error=reason, **fields)
