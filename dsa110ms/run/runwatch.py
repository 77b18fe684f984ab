"""Jobs die with their run.

Snakemake starts each job as a process of its own (through a shell); if the Snakemake process
running the jobs dies outright (SIGKILL, the out-of-memory killer), its jobs would live on as
orphans, and an immediate rerun would race them: an orphaned join removing parts the rerun is
using, an orphaned part job writing into a part the rerun rewrites. So every Snakemake process
that reads the Snakefile names itself, in :data:`RUN_ENV`, as the process whose jobs these are,
and every job watches it with a pidfd (:func:`die_with_run`): when it exits, the job kills
itself at once (after ``on_death``, e.g. killing its own child), whatever it was doing. What a
killed job leaves (a partial part, a staging MS) is ours and is removed by the rerun.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

#: ``<pid>@<host>`` of the Snakemake process running this run's jobs (on this host).
RUN_ENV = "DSA110MS_RUN_PROCESS"


def export_run_process(environ=os.environ) -> None:
    """Called by every Snakemake process when it reads the Snakefile: the jobs it starts
    (which inherit its environment) belong to it."""
    environ[RUN_ENV] = f"{os.getpid()}@{socket.gethostname()}"


def signal_on_parent_death(signum: int) -> None:
    """This process gets ``signum`` when its parent dies, even by SIGKILL (Linux
    ``PR_SET_PDEATHSIG``)."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def die_with_run(on_death: Callable[[], None] | None = None, environ=os.environ) -> bool:
    """In a job process: when the run process (:data:`RUN_ENV`) exits, call ``on_death`` and
    SIGKILL this process. Returns False if there is nothing to watch (not started by the
    workflow, or by a process on another host)."""
    pid_text, _, host = environ.get(RUN_ENV, "").partition("@")
    if not pid_text.isdigit() or host != socket.gethostname():
        return False
    pid = int(pid_text)

    def died() -> None:
        log.error("the Snakemake process of this run (pid %d) has died; stopping this job", pid)
        if on_death is not None:
            on_death()
        _kill_self()

    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        died()
        return True

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll():
            pass
        died()

    threading.Thread(target=watch, name="die-with-run", daemon=True).start()
    return True
