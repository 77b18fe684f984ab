"""What the archive driver (:mod:`dsa110ms.archive`) knows of an archive: its windows of time,
what became of each window's groups, and what is done.

The **ledger** is a SQLite file, ``<log_dir>/archive/ledger.sqlite``: one row per window (its
bounds, how many input names its range held when it ran, its status) and one per group (its
window, ``published``/``skipped``/``failed``/``not run``, the reason, when). People read it
through the driver's lines and the archive summary (``<report_dir>/archive.html``); a failed
group is retried only with ``--retry-failed``.

**What is done** is decided from the published stamps, which stay the truth: the names in
``<output_dir>/.dsa110ms/published/`` and the MSs beside them, read with two directory listings
(no file is stat-ed). A window is done if the ledger says it ran to the end, the inventory's
listing holds the same names in its range as then (count and checksum), and every group it
published still has its
stamp and its MS. The ledger is only a cache of the runs' outcomes: removed, every window runs
again, and each run finds its published groups up to date (its own per-group checks of the
stamps) and rebuilds the ledger.

Times are UTC, ``YYYY-MM-DDTHH:MM:SS``; windows are ``hours`` long, aligned on multiples of
``hours`` from 1970-01-01T00:00:00 (24: UTC days), bounds inclusive (the last is one second
before the next window's first).
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dsa110ms.groups import UNIX_EPOCH, format_timestamp, names_near, parse_timestamp
from dsa110ms.inventory import Inventory
from dsa110ms.ms.publish import OutputArea

SCHEMA_VERSION = 2
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS window (start TEXT PRIMARY KEY, end_ TEXT NOT NULL, "
    "names INTEGER NOT NULL, status TEXT NOT NULL, started_at REAL, finished_at REAL, "
    "detail TEXT, digest TEXT NOT NULL DEFAULT '') STRICT",
    "CREATE TABLE IF NOT EXISTS grp (id TEXT PRIMARY KEY, window TEXT NOT NULL, "
    "status TEXT NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL) STRICT",
    "CREATE INDEX IF NOT EXISTS grp_window ON grp (window)",
    "CREATE INDEX IF NOT EXISTS grp_status ON grp (status)",
)
#: A window's statuses: ran to the end (every group accounted for), held no input file, or
#: stopped (or failed) before the end: run again.
DONE, EMPTY, UNFINISHED = "done", "empty", "unfinished"


class LedgerError(Exception):
    """The ledger cannot be read or written."""


@dataclass(frozen=True)
class Window:
    """``start`` to ``end`` (UTC, inclusive): the groups whose ids are in it."""

    start: str
    end: str

    @property
    def name(self) -> str:
        return self.start

    def names_between(self, tolerance_s: float) -> tuple[str, str]:
        """The range of input names its groups' files can have (:func:`names_near`)."""
        bounds = names_near(
            parse_timestamp(self.start),
            parse_timestamp(self.end),
            None,
            dt.timedelta(seconds=tolerance_s),
        )
        return bounds or ("", "~")


def windows_between(first: str, last: str, hours: float, cut: bool = True) -> list[Window]:
    """The windows of ``hours`` covering ``first``..``last`` (UTC timestamps, inclusive), in time
    order; with ``cut``, the first and last are cut at ``first`` and ``last`` (a configured
    start_time and end_time: no group outside them is converted), else whole (the data's span:
    the windows stay the same as files are added)."""
    step = dt.timedelta(hours=hours)
    t0, t1 = parse_timestamp(first), parse_timestamp(last)
    start = UNIX_EPOCH + step * ((t0 - UNIX_EPOCH) // step)
    windows = []
    while start <= t1:
        end = start + step - dt.timedelta(seconds=1)
        if cut:
            start, end = max(start, t0), min(end, t1)
        windows.append(Window(format_timestamp(start), format_timestamp(end)))
        start = parse_timestamp(windows[-1].end) + dt.timedelta(seconds=1)
    return windows


def published_ids(output_dir: str | os.PathLike) -> set[str]:
    """Groups with a published stamp and an MS beside it: two directory listings, no stat."""
    area = OutputArea.of(output_dir)
    try:
        with os.scandir(area.state_dir / "published") as it:
            stamps = {e.name[: -len(".json")] for e in it if e.name.endswith(".json")}
        with os.scandir(output_dir) as it:
            mss = {e.name[: -len(".ms")] for e in it if e.name.endswith(".ms")}
    except FileNotFoundError:
        return set()
    return stamps & mss


class Ledger:
    """The ledger at ``path`` (made if missing). Raises :class:`LedgerError` with the reason if
    it cannot be opened or is not one this version wrote."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
                raise LedgerError(f"{self.path}: not a regular file; move it aside")
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise LedgerError(
                    f"{self.path}: written by another version of dsa110ms (layout {version}); "
                    "move it aside (the next run rebuilds it from the published MSs)"
                )
            for statement in SCHEMA:
                self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(
                f"{self.path}: the archive ledger cannot be used ({exc}); move it aside (the "
                "next run rebuilds it from the published MSs)"
            ) from None

    def close(self) -> None:
        self.db.close()

    def _execute(self, sql: str, args: Iterable = ()) -> list[tuple]:
        try:
            return self.db.execute(sql, tuple(args)).fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: the archive ledger cannot be used ({exc})") from None

    # --- windows -------------------------------------------------------------------------------

    def window_started(self, w: Window, names: tuple[int, str]) -> None:
        """``names``: the count and checksum of the input names in its range
        (:meth:`dsa110ms.inventory.Inventory.fingerprint`)."""
        self._execute(
            "INSERT OR REPLACE INTO window VALUES (?, ?, ?, ?, ?, NULL, NULL, ?)",
            (w.start, w.end, names[0], UNFINISHED, time.time(), names[1]),
        )

    def window_finished(self, w: Window, status: str, detail: str = "") -> None:
        self._execute(
            "UPDATE window SET status = ?, finished_at = ?, detail = ? WHERE start = ?",
            (status, time.time(), detail, w.start),
        )

    def record_empty(self, w: Window) -> None:
        now = time.time()
        self._execute(
            "INSERT OR REPLACE INTO window VALUES (?, ?, 0, ?, ?, ?, 'no input files', '0:0:0')",
            (w.start, w.end, EMPTY, now, now),
        )

    def record_groups(self, w: Window, outcomes: dict) -> None:
        """Each group's :class:`dsa110ms.batch.Outcome` in window ``w``, in one transaction."""
        now = time.time()
        rows = [(gid, w.start, o.status, o.reason, now) for gid, o in outcomes.items()]
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO grp VALUES (?, ?, ?, ?, ?)", rows)
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise LedgerError(
                f"{self.path}: the archive ledger cannot be written ({exc})"
            ) from None

    # --- what is done --------------------------------------------------------------------------

    def done_windows(
        self,
        windows: list[Window],
        inventory: Inventory,
        input_dir: str | os.PathLike,
        tolerance_s: float,
        published: set[str],
    ) -> set[str]:
        """The starts of ``windows`` that are done (module docstring): run to the end (or
        empty), the same input names in range as then, and every group they published still
        published."""
        ran = {
            start: digest
            for start, digest in self._execute(
                "SELECT start, digest FROM window WHERE status IN (?, ?)", (DONE, EMPTY)
            )
        }
        lost = {
            window
            for window, gid in self._execute(
                "SELECT window, id FROM grp WHERE status = 'published'"
            )
            if gid not in published
        }
        done = set()
        for w in windows:
            if w.start not in ran or w.start in lost:
                continue
            _, digest = inventory.fingerprint(input_dir, *w.names_between(tolerance_s))
            if digest == ran[w.start]:
                done.add(w.start)
        return done

    def groups(self, status: str | None = None) -> list[tuple[str, str, str, str, float]]:
        """(id, window, status, reason, at) of every group (of ``status``), by id."""
        if status is None:
            return self._execute("SELECT * FROM grp ORDER BY id")
        return self._execute("SELECT * FROM grp WHERE status = ? ORDER BY id", (status,))

    def windows(self) -> list[tuple]:
        """(start, end, names, status, started_at, finished_at, detail) of every window."""
        return self._execute(
            "SELECT start, end_, names, status, started_at, finished_at, detail FROM window "
            "ORDER BY start"
        )

    def failed_by_window(self) -> dict[str, list[str]]:
        """Window start -> its failed groups."""
        failed: dict[str, list[str]] = {}
        for gid, window, *_ in self.groups("failed"):
            failed.setdefault(window, []).append(gid)
        return failed
