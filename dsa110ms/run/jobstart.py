"""What a job's process does first, before its imports (numpy, casacore, casatools: ~0.3 s).

Nothing here imports more than the standard library, so that it takes effect before any of them
is loaded.
"""

from __future__ import annotations

import os
import signal

#: The variables by which Snakemake tells a job's libraries (OpenMP, OpenBLAS, MKL, ...) how many
#: threads to use: the job's ``threads``.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def one_thread_if_told_none(environ=os.environ) -> None:
    """A job of ``threads: 0`` (rule concat, which holds no core) is given "0" in each of
    :data:`THREAD_VARIABLES`: libgomp refuses it with a warning on the terminal and OpenBLAS
    reads it as every CPU of the machine. Such a job uses one thread of each library."""
    for name in THREAD_VARIABLES:
        if environ.get(name) == "0":
            environ[name] = "1"


def quiet_ctrl_c_while_starting() -> None:
    """Ctrl-C reaches every process of the terminal's process group, jobs included. A job still
    importing its libraries would end with a KeyboardInterrupt traceback on the terminal; until
    the job installs its own handlers, it ends instead as killed by SIGINT, without a word (it
    has written nothing yet; the run's summary names what it was)."""

    def stop(signum, frame):
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGINT, stop)
