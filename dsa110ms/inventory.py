"""What the input files say about their own time: each file's first integration, read from the
file and cached by the file's identity.

Discovery (:mod:`dsa110ms.groups`) names a group by when its data start, not by its file names, so
it reads two numbers from each file it converts: ``Header/time_array[0]`` (JD, UTC, of the first
integration's centre; DSA-110's files are time-major, and every UVH5 writer we know lists the
earliest time first) and ``Header/integration_time[0]`` (s). Nothing else is read.

Reading them costs about a millisecond per file (more on a network file system), so the values
are kept in a small SQLite file in the working directory (:data:`INVENTORY_PATH`), keyed by the
file's path and identity (size, mtime_ns, inode): a file replaced or rewritten is read again. The
cache is an optimisation only: if it cannot be opened or written, files are read every time.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import h5py

log = logging.getLogger(__name__)

#: Where the cache lives, relative to the working directory (beside the run's manifest).
INVENTORY_PATH = Path(".dsa110ms") / "inventory.sqlite"

#: How long a process waits for another one writing the cache (s) before it gives up caching.
LOCK_TIMEOUT_S = 5.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS first_integration (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    time_jd REAL NOT NULL,
    integration_s REAL NOT NULL
)
"""


@dataclass(frozen=True)
class FirstIntegration:
    """A file's first integration as stored in it: ``time_jd``, JD (UTC) of its centre
    (``time_array[0]``, float64, compared bit for bit), and ``integration_s``, its length in s
    (``integration_time[0]``)."""

    time_jd: float
    integration_s: float


class HeaderError(Exception):
    """A file's first integration cannot be read (not HDF5, no ``Header/time_array``, ...)."""


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


def read_first_integration(path: str) -> tuple[FirstIntegration, tuple[int, int, int]]:
    """``path``'s first integration and the identity (size, mtime_ns, inode) of the file read.

    The file is opened once, without blocking (a FIFO put in its place is never waited on), and
    read only if that open file is a regular file; its identity is taken from the open file, so
    the cache never pairs one file's time with another's identity."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise HeaderError(exc.strerror or str(exc)) from None
    with os.fdopen(fd, "rb", buffering=0) as stream:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise HeaderError("not a regular file")
        try:
            with h5py.File(stream, "r") as f:
                time_jd = float(f["Header/time_array"][0])
                integration_s = float(f["Header/integration_time"][0])
        except Exception as exc:  # h5py raises OSError, KeyError, ValueError, IndexError...
            raise HeaderError(f"{type(exc).__name__}: {exc}") from None
    return FirstIntegration(time_jd, integration_s), _identity(st)


class Inventory:
    """First integrations of input files, cached in SQLite at ``path`` (None: no cache). One
    object serves one discovery: a file it could not read is not tried again meanwhile."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else None
        self._known: dict[str, tuple] = {}
        self._new: list[tuple] = []
        self._failed: dict[str, HeaderError] = {}  # this object's lifetime only: never stored
        if self.path is not None:
            self._known = self._load()

    def _connect(self) -> closing[sqlite3.Connection]:
        """The cache, created if new; closed when the ``with`` block ends (sqlite3's own context
        manager only commits)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S)
        db.execute(SCHEMA)
        return closing(db)

    def _load(self) -> dict[str, tuple]:
        try:
            with self._connect() as db:
                rows = db.execute("SELECT * FROM first_integration").fetchall()
        except (OSError, sqlite3.Error) as exc:
            log.warning("%s: cannot be used (%s); reading every file's header", self.path, exc)
            self.path = None
            return {}
        return {row[0]: row[1:] for row in rows}

    def first_integration(self, path: str) -> FirstIntegration:
        """``path``'s first integration, from the cache if the file is the one cached.
        Raises :class:`HeaderError`."""
        known = self._known.get(path)
        if known is not None:
            try:
                current = _identity(os.stat(path))
            except OSError:
                current = None
            if current == tuple(known[:3]):
                return FirstIntegration(*known[3:])
        if path in self._failed:
            raise self._failed[path]
        try:
            first, identity = read_first_integration(path)
        except HeaderError as exc:
            self._failed[path] = exc
            raise
        row = (*identity, first.time_jd, first.integration_s)
        self._known[path] = row
        self._new.append((path, *row))
        return first

    def save(self) -> None:
        """Store what was read since the last save (nothing if there is no cache)."""
        if self.path is None or not self._new:
            return
        try:
            with self._connect() as db, db:  # the inner `db`: one transaction, committed
                db.executemany(
                    "INSERT OR REPLACE INTO first_integration VALUES (?, ?, ?, ?, ?, ?)", self._new
                )
        except (OSError, sqlite3.Error) as exc:  # e.g. locked by another process for too long
            log.warning("%s: not updated (%s); files are read again next time", self.path, exc)
        self._new = []
