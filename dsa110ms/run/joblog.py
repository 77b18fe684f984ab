"""Logging for one Snakemake job: to its ``log:`` file and stderr, errors as one line."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path

from dsa110ms.errors import Dsa110msError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def job_log(path: str | Path):
    """Log INFO and up to ``path`` and stderr. A :class:`Dsa110msError` ends the job with its
    one-line reason (no traceback: the reason names the file and what is wrong); anything else
    is a bug and keeps its traceback."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handlers = [logging.FileHandler(path), logging.StreamHandler(sys.stderr)]
    handlers[1].setLevel(logging.WARNING)  # the terminal gets problems; the log gets all
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(h)
    root.setLevel(logging.INFO)
    try:
        yield logging.getLogger("dsa110ms")
    except Dsa110msError as exc:
        logging.getLogger("dsa110ms").error("%s", exc)
        raise SystemExit(1) from None
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()
