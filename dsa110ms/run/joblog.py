"""Logging for one Snakemake job: to its ``log:`` file and stderr, errors as one line."""

from __future__ import annotations

import logging
import sys
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


@contextmanager
def job_log(path: str | Path):
    """Log INFO and up to ``path`` and WARNING and up to stderr. A failing job ends with one
    line on stderr: a :class:`Dsa110msError`'s reason (it names the file and what is wrong), or
    for any other exception (a bug, or a library failure we did not foresee) its type and
    message and where its traceback is: in ``path`` only, never on the terminal."""
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
        yield log
    except Dsa110msError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None
    except Exception as exc:  # noqa: BLE001 - reported in one line, traceback to the log
        log.error(
            "unexpected %s: %s (traceback in %s)", type(exc).__name__, exc, path, exc_info=True
        )
        raise SystemExit(1) from None
    finally:
        for h in (to_file, to_terminal):
            root.removeHandler(h)
            h.close()
