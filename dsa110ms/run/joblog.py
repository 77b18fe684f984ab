"""Logging for one Snakemake job: to its ``log:`` file and stderr, errors as one line; a job
stopped by a signal (Ctrl-C, a service manager's SIGTERM, a hang-up) ends with one line too,
after its ``finally`` blocks ran (the join removes its staging MS there)."""

from __future__ import annotations

import errno
import logging
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from dsa110ms.errors import Dsa110msError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    """The terminal's format: a record without its traceback (that goes to the job's log)."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


#: The signals that stop a job as a whole run is stopped: Ctrl-C (SIGINT, to the terminal's
#: process group), SIGTERM (a service manager's stop, ``timeout``), SIGHUP (the terminal closed).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class JobStopped(BaseException):  # noqa: N818 - not an error: the run is stopping
    """Raised in a job's main thread when a stop signal arrives, so that every ``finally`` of
    the job runs (its cleanup) before it exits; not an ``Exception``, so no handler of errors
    mistakes it for one."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name} (the run is being stopped)"


class DroppedStops:
    """A stop exception that Python dropped, raised again.

    A signal handler runs wherever the main thread is, and an exception it raises inside a
    weakref callback or a ``__del__`` (asyncio's WeakSets, garbage collection) is printed as
    "Exception ignored in ..." and dropped: the process would run on, deaf to the signal (its
    handler already set to ignore repeats). A handler passes the exception it raises through
    :meth:`raising`; if exactly that one is dropped in such a callback in the main thread as it
    is raised (within :data:`DROPPED_WITHIN_S`), ``rearm(exc)`` restores the handler and
    returns the signal, which is sent to this process again 50 ms later (once the callback has
    returned), unless :meth:`end` came first. Any other unraisable exception (an exit
    handler's, a stale one raised again later, another thread's), or ``rearm`` returning None,
    is reported as Python does."""

    #: Seconds from raising to dropping: Python drops it as the callback returns.
    DROPPED_WITHIN_S = 0.5

    def __init__(self, rearm: Callable[[BaseException], int | None]):
        self.rearm, self.raised, self.raised_at, self.active = rearm, None, 0.0, True
        self.before = sys.unraisablehook
        sys.unraisablehook = self._hook

    def raising(self, exc: BaseException) -> BaseException:
        self.raised, self.raised_at = exc, time.monotonic()
        return exc

    def end(self) -> None:
        self.active = False
        if sys.unraisablehook == self._hook:
            sys.unraisablehook = self.before

    def _hook(self, unraisable) -> None:
        signum = None
        if (
            self.active
            and unraisable.exc_value is self.raised
            and time.monotonic() - self.raised_at < self.DROPPED_WITHIN_S
            and unraisable.err_msg is None  # a callback or __del__, not an atexit handler
            and threading.current_thread() is threading.main_thread()
        ):
            exc, self.raised = self.raised, None
            signum = self.rearm(exc)
        if signum is None:
            self.before(unraisable)
            return
        timer = threading.Timer(0.05, self._send, (signum,))
        timer.daemon = True
        timer.start()

    def _send(self, signum: int) -> None:
        if self.active:
            os.kill(os.getpid(), signum)


#: The job's :class:`DroppedStops`, within :func:`stop_signals_raise`.
_dropped: DroppedStops | None = None


def _raise_stopped(signum, frame) -> None:
    for s in STOP_SIGNALS:  # a repeated signal (Ctrl-C twice, timeout's) must not cut the cleanup
        signal.signal(s, signal.SIG_IGN)
    raise _dropped.raising(JobStopped(signum))  # installed only by stop_signals_raise


def _raise_stopped_again(exc: JobStopped) -> int:
    for s in STOP_SIGNALS:
        signal.signal(s, _raise_stopped)
    return exc.signum


@contextmanager
def stop_signals_raise():
    """Within: a stop signal (:data:`STOP_SIGNALS`) raises :class:`JobStopped` (again if Python
    dropped it, :class:`DroppedStops`); the handlers before are restored afterwards."""
    global _dropped
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    outer, _dropped = _dropped, DroppedStops(_raise_stopped_again)
    before = {s: signal.signal(s, _raise_stopped) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        _dropped.end()
        _dropped = outer


def out_of_memory(exc: BaseException) -> str | None:
    """The one line of a job that ran out of memory, or None: a MemoryError, an ENOMEM, or,
    under an address-space limit (``ulimit -v``, ``prlimit --as``), an import or a mapping
    that failed (casacore's modules then fail to import as "No module named '_image'")."""
    what = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or getattr(exc, "errno", None) == errno.ENOMEM:
        return f"out of memory ({what})"
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if isinstance(exc, (ImportError, OSError)) and limit != resource.RLIM_INFINITY:
        return (
            f"out of memory: the job's address-space limit ({limit / 1e6:.0f} MB) refused an "
            f"allocation ({what})"
        )
    return None


@contextmanager
def job_log(path: str | Path):
    """Log INFO and up to ``path`` and WARNING and up to stderr. A failing job ends with one
    line on stderr: a :class:`Dsa110msError`'s reason (it names the file and what is wrong), or
    for any other exception (a bug, or a library failure we did not foresee) its type and
    message and where its traceback is: in ``path`` only, never on the terminal. A stop
    signal (:data:`STOP_SIGNALS`) ends it with one line, ``stopped by SIGTERM ...``, exit status
    128 + the signal's number, after the job's own ``finally`` blocks ran."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    to_file, to_terminal = logging.FileHandler(path), logging.StreamHandler(sys.stderr)
    to_file.setFormatter(logging.Formatter(FORMAT))
    to_terminal.setFormatter(OneLineFormatter(FORMAT))
    to_terminal.setLevel(logging.WARNING)  # the terminal gets problems; the log gets all
    for h in (to_file, to_terminal):
        root.addHandler(h)
    root.setLevel(logging.INFO)
    log = logging.getLogger("dsa110ms")
    try:
        with stop_signals_raise():
            yield log
    except JobStopped as exc:
        log.error("%s", exc)
        raise SystemExit(128 + exc.signum) from None
    except Dsa110msError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None
    except Exception as exc:  # noqa: BLE001 - reported in one line, traceback to the log
        if reason := out_of_memory(exc):
            log.error("%s (traceback in %s)", reason, path, exc_info=True)
            raise SystemExit(1) from None
        log.error(
            "unexpected %s: %s (traceback in %s)", type(exc).__name__, exc, path, exc_info=True
        )
        raise SystemExit(1) from None
    finally:
        for h in (to_file, to_terminal):
            root.removeHandler(h)
            h.close()
