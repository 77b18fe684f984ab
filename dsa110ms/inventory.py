"""What the input files say about themselves: each file's first integration and the shape of its
data, read from the file's header and cached by the file's identity.

Discovery (:mod:`dsa110ms.groups`) names a group by when its data start, not by its file names, so
it reads two numbers from each file it converts: ``Header/time_array[0]`` (JD, UTC, of the first
integration's centre; DSA-110's files are time-major, and every UVH5 writer we know lists the
earliest time first) and ``Header/integration_time[0]`` (s). In the same open it reads the shape
of ``Data/visdata`` (HDF5 metadata, no data): the run sizes each group's scratch from it
(:mod:`dsa110ms.run.scratch`), since a compressed file is much smaller than what it holds.

Reading them costs about a millisecond per file (more on a network file system), so the values
are kept in a small SQLite file (config ``inventory``, ``.dsa110ms/inventory.sqlite`` in the
working directory by default), keyed by the file's path and identity (size, mtime_ns, inode): a
file replaced or rewritten is read again.

The same file keeps the **listing** of each input directory (the names of its subband files),
which the archive driver (:mod:`dsa110ms.archive`) refreshes incrementally: the directory is
listed again only when its mtime changed, and only the names added or removed are written.
With ``input_listing: inventory`` a window's discovery is then one indexed range query of the
names (a file name starts with its timestamp), not a listing of an archive of millions of
files. SQLite (the standard library): one file, transactions that a killed writer cannot leave
half-done, concurrent readers with one writer, and B-tree range queries; nothing to install or
run.

The cache is an optimisation only, and never trusted blindly:

- its layout carries a version (SQLite's ``user_version``, :data:`SCHEMA_VERSION`): a cache of
  an earlier layout (or none) is emptied and rebuilt; one of a later layout (a newer version of
  the package) is left as it is and not used;
- a row whose values are not what :meth:`Inventory.first_integration` writes (types, finite
  numbers) is a miss: the file is read again and the row replaced;
- a cache SQLite cannot read (not a database, corrupt) is renamed aside, to
  ``inventory.sqlite.broken-<UTC time>`` (named in one warning line), and a new one is built.
  Renamed, not removed: it may not be a file the workflow wrote, and it is the evidence of what
  went wrong; nothing is ever deleted outside :func:`dsa110ms.owned.remove_owned`, and the
  working directory's ``.dsa110ms`` is not a directory the workflow marks as its own;
- a cache that cannot be opened for any other reason (locked by another process for too long,
  read-only, a directory in its place) is left alone: files are read every time.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import math
import os
import sqlite3
import stat
import time
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import h5py

log = logging.getLogger(__name__)

#: How long a process waits for another one writing the cache (s) before it gives up caching.
LOCK_TIMEOUT_S = 5.0

#: The cache's layout (SQLite ``user_version``): 0, before versions, held only the first
#: integration; 2 adds the data's shape; 3 the input directories' listings.
SCHEMA_VERSION = 3
TABLE = "file_header"
COLUMNS = (
    ("path", "TEXT PRIMARY KEY"),
    ("size", "INTEGER NOT NULL"),
    ("mtime_ns", "INTEGER NOT NULL"),
    ("inode", "INTEGER NOT NULL"),
    ("time_jd", "REAL NOT NULL"),
    ("integration_s", "REAL NOT NULL"),
    ("nblts", "INTEGER"),  # NULL: the file has no Data/visdata (its jobs will say so)
    ("nfreqs", "INTEGER"),
    ("npols", "INTEGER"),
    ("ntimes", "INTEGER"),
)
SCHEMA = f"CREATE TABLE {TABLE} ({', '.join(f'{n} {t}' for n, t in COLUMNS)}) STRICT"
#: The listing of each input directory (:meth:`Inventory.refresh_listing`): the names of its
#: subband files (``*.hdf5``, not ``*_incomplete.hdf5``), keyed by directory and name. A subband
#: file's name starts with its timestamp, so a window's files are one range of the key.
LISTING = "input_name"
LISTING_SCHEMA = (
    f"CREATE TABLE {LISTING} (dir TEXT NOT NULL, name TEXT NOT NULL, "
    "PRIMARY KEY (dir, name)) STRICT, WITHOUT ROWID"
)
#: When each directory was listed: its mtime_ns and inode then (unchanged: nothing to list).
LISTED = "listed_dir"
LISTED_SCHEMA = (
    f"CREATE TABLE {LISTED} (dir TEXT PRIMARY KEY, mtime_ns INTEGER NOT NULL, "
    "inode INTEGER NOT NULL, listed_at REAL NOT NULL) STRICT"
)
#: SQLite's result codes for a file whose contents are not a readable database.
UNREADABLE_CODES = frozenset(
    code
    for code in (getattr(sqlite3, n, None) for n in ("SQLITE_NOTADB", "SQLITE_CORRUPT"))
    if code
)


@dataclass(frozen=True)
class FirstIntegration:
    """A file's first integration as stored in it: ``time_jd``, JD (UTC) of its centre
    (``time_array[0]``, float64, compared bit for bit), and ``integration_s``, its length in s
    (``integration_time[0]``)."""

    time_jd: float
    integration_s: float


@dataclass(frozen=True)
class DataShape:
    """The shape of a file's visibilities (``Data/visdata``): baseline-times (rows), channels,
    polarizations, and its integrations (``Header/Ntimes``; Nblts if the file does not say).
    Sizes what a part and the template take on scratch."""

    nblts: int
    nfreqs: int
    npols: int
    ntimes: int

    @property
    def values(self) -> int:
        """Visibilities (complex values) in the file."""
        return self.nblts * self.nfreqs * self.npols


@dataclass(frozen=True)
class FileHeader:
    """What the inventory knows of a file: its first integration, and its data's shape (None
    if it has no ``Data/visdata``)."""

    first: FirstIntegration
    shape: DataShape | None


class HeaderError(Exception):
    """A file's first integration cannot be read (not HDF5, no ``Header/time_array``, ...)."""


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


def _data_shape(f: h5py.File) -> DataShape | None:
    """``Data/visdata``'s shape from its HDF5 metadata (no data read): (Nblts, Nfreqs, Npols),
    or UVH5's older (Nblts, 1, Nfreqs, Npols)."""
    visdata = f.get("Data/visdata")
    if not isinstance(visdata, h5py.Dataset) or len(visdata.shape) < 3:
        return None
    nblts, *freqs, npols = (int(n) for n in visdata.shape)
    try:
        ntimes = int(f["Header/Ntimes"][()])
    except (KeyError, TypeError, ValueError):
        ntimes = nblts  # the most a file of nblts rows can have
    return DataShape(nblts, math.prod(freqs), npols, min(max(ntimes, 1), max(nblts, 1)))


def read_header(path: str) -> tuple[FileHeader, tuple[int, int, int]]:
    """``path``'s header (:class:`FileHeader`) and the identity (size, mtime_ns, inode) of the
    file read.

    The file is opened once, without blocking (a FIFO put in its place is never waited on), and
    read only if that open file is a regular file; its identity is taken from the open file, so
    the cache never pairs one file's values with another's identity."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise HeaderError(exc.strerror or str(exc)) from None
    with os.fdopen(fd, "rb", buffering=0) as stream:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise HeaderError("not a regular file")
        if st.st_size == 0 and (empty := _empty_file_error()) is not None:
            raise HeaderError(empty)  # what h5py says of every empty file, found once
        error = None
        try:
            with h5py.File(stream, "r") as f:
                time_jd = float(f["Header/time_array"][0])
                integration_s = float(f["Header/integration_time"][0])
                shape = _data_shape(f)
        except Exception as exc:  # h5py raises OSError, KeyError, ValueError, IndexError...
            error = _h5py_error(exc)
    if error is not None:  # raised here, not in the handler: h5py's error is not kept with it
        raise HeaderError(error)
    return FileHeader(FirstIntegration(time_jd, integration_s), shape), _identity(st)


def _h5py_error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


@cache
def _empty_file_error() -> str | None:
    """What :func:`read_header` says of an empty file (h5py's error opening one through a
    Python file object, as it opens every file), found once per process: an archive of
    placeholders holds millions of them. None if h5py opens it (it never does)."""
    try:
        h5py.File(io.BytesIO(b""), "r").close()
    except Exception as exc:  # noqa: BLE001 - the errors read_header turns into words
        return _h5py_error(exc)
    return None


def read_first_integration(path: str) -> tuple[FirstIntegration, tuple[int, int, int]]:
    """``path``'s first integration and the identity of the file read (:func:`read_header`)."""
    header, identity = read_header(path)
    return header.first, identity


def _row_of(identity: tuple[int, int, int], header: FileHeader) -> tuple:
    """The cache row (without the path) of a header, as :data:`COLUMNS` order it."""
    shape = header.shape
    sizes = (shape.nblts, shape.nfreqs, shape.npols, shape.ntimes) if shape else (None,) * 4
    return (*identity, header.first.time_jd, header.first.integration_s, *sizes)


def _header_of(row: tuple) -> FileHeader | None:
    """The header a cache row (without the path) holds, or None if the row is not one
    :func:`_row_of` writes (wrong types, numbers that are not finite, a partial shape)."""
    if len(row) != len(COLUMNS) - 1:
        return None
    size, mtime_ns, inode, time_jd, integration_s, *sizes = row
    if not all(type(v) is int for v in (size, mtime_ns, inode)):
        return None
    if not all(type(v) is float and math.isfinite(v) for v in (time_jd, integration_s)):
        return None
    if sizes == [None] * 4:
        shape = None
    elif all(type(v) is int and v >= 0 for v in sizes):
        shape = DataShape(*sizes)
    else:
        return None
    return FileHeader(FirstIntegration(time_jd, integration_s), shape)


def _cacheable(row: tuple) -> bool:
    """Whether a row read back would be the same header (SQLite stores NaN as NULL)."""
    return _header_of(row) is not None


class Inventory:
    """Headers of input files, cached in SQLite at ``path`` (None: no cache), and the listings of
    input directories. One object serves one discovery (and the scratch sizes of its groups): a
    file it could not read is not tried again meanwhile. Rows are looked up as files are asked
    for (:meth:`preload` fetches many in one query), never all at once: an archive's cache holds
    millions of files, a window's discovery asks for thousands."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else None
        self._known: dict[str, tuple | None] = {}  # path -> row (without the path); None: none
        self._new: list[tuple] = []
        self._failed: dict[str, HeaderError] = {}  # this object's lifetime only: never stored
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self._db = self._open()

    # --- the cache file ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """The cache, with this version's tables (created or rebuilt if need be), in autocommit
        mode (transactions are explicit). Raises :class:`sqlite3.Error`, :class:`OSError`, or
        :class:`_LaterLayout`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
            raise OSError("not a regular file")  # neither followed nor set aside: not ours
        db = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
        try:
            _ensure_layout(db)
        except BaseException:
            db.close()
            raise
        return db

    def _open(self) -> sqlite3.Connection | None:
        """The cache, ready (set aside and rebuilt if SQLite cannot read it); None, with one
        warning, if it cannot be used (``path`` is then None: files are read every time)."""
        for attempt in (1, 2):
            before = _stat_or_none(self.path)
            try:
                db = self._connect()
                try:
                    db.execute(f"SELECT 1 FROM {TABLE} LIMIT 1").fetchall()
                except BaseException:
                    db.close()
                    raise
                return db
            except _LaterLayout as exc:
                log.warning("%s: %s; reading every file's header", self.path, exc)
            except sqlite3.DatabaseError as exc:
                unreadable = getattr(exc, "sqlite_errorcode", None) in UNREADABLE_CODES
                if attempt == 1 and unreadable and self._set_aside(before, exc):
                    continue
                if not unreadable or attempt == 2:
                    log.warning(
                        "%s: cannot be used (%s); reading every file's header", self.path, exc
                    )
            except (OSError, sqlite3.Error) as exc:
                log.warning("%s: cannot be used (%s); reading every file's header", self.path, exc)
            break
        self.path = None
        return None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of a read; none, with one warning (and no cache from then on), if the cache has
        become unusable meanwhile (locked for too long, removed)."""
        if self._db is None:
            return []
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            log.warning("%s: cannot be read (%s); reading every file's header", self.path, exc)
            self.close()
            self.path = None
            return []

    def _rows(self, sql: str, args: tuple = ()) -> Iterator[tuple]:
        """The rows of a read, one at a time (not all held at once), as :meth:`_query` reads
        them: none (or no more), with one warning and no cache from then on, if the cache has
        become unusable."""
        if self._db is None:
            return
        try:
            yield from self._db.execute(sql, args)
        except sqlite3.Error as exc:
            log.warning("%s: cannot be read (%s); reading every file's header", self.path, exc)
            self.close()
            self.path = None

    def _write(self, sql: str, rows: Iterable[tuple], *more: tuple[str, Iterable[tuple]]) -> bool:
        """``executemany(sql, rows)`` (and each of ``more``) in one transaction; False, with a
        warning, if the cache cannot be written (e.g. locked by another process too long)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement, values in ((sql, rows), *more):
                    self._db.executemany(statement, values)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            log.warning("%s: not updated (%s); files are read again next time", self.path, exc)
            return False
        return True

    def _set_aside(self, before: os.stat_result | None, exc: Exception) -> bool:
        """Rename the unreadable cache aside (module docstring), with SQLite's journal files;
        True if done, or if the file is no longer the one found unreadable (another process set
        it aside meanwhile: the cache is opened again)."""
        now = _stat_or_none(self.path)
        if (
            now is None
            or before is None
            or (now.st_ino, now.st_dev) != (before.st_ino, before.st_dev)
        ):
            return True
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.broken-{stamp}-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except OSError as rename_error:
            log.warning(
                "%s: cannot be read (%s) nor set aside (%s); reading every file's header",
                self.path,
                exc,
                rename_error.strerror or rename_error,
            )
            return False
        for suffix in ("-journal", "-wal", "-shm"):  # they belong to the file set aside
            with suppress(FileNotFoundError):
                os.rename(f"{self.path}{suffix}", f"{aside}{suffix}")
        log.warning(
            "%s: not a readable cache (%s): set aside as %s and rebuilt (files' headers are read "
            "again); the file set aside can be removed",
            self.path,
            exc,
            aside.name,
        )
        return True

    # --- headers -------------------------------------------------------------------------------

    def header(self, path: str) -> FileHeader:
        """``path``'s header, from the cache if the file is the one cached and the row is one
        this version writes. Raises :class:`HeaderError`."""
        if path not in self._known:
            self.preload([path])
        known = self._known.get(path)
        if known is not None:
            cached = _header_of(tuple(known))
            try:
                current = _identity(os.stat(path))
            except OSError:
                current = None
            if cached is not None and current == tuple(known[:3]):
                return cached
        if path in self._failed:
            raise self._failed[path]
        try:
            header, identity = read_header(path)
        except HeaderError as exc:
            self._failed[path] = exc
            raise
        row = _row_of(identity, header)
        self._known[path] = row
        if _cacheable(row):
            self._new.append((path, *row))
        return header

    def first_integration(self, path: str) -> FirstIntegration:
        """``path``'s first integration (:meth:`header`). Raises :class:`HeaderError`."""
        return self.header(path).first

    def data_shape(self, path: str) -> DataShape | None:
        """``path``'s data shape, or None if it has none or cannot be read (its job says why)."""
        try:
            return self.header(path).shape
        except HeaderError:
            return None

    def preload(self, paths: list[str]) -> None:
        """Look up the cached rows of ``paths`` (those not looked up yet) in as few queries as
        SQLite allows; a path without a row is read from its file when asked for."""
        wanted = [p for p in dict.fromkeys(paths) if p not in self._known]
        for p in wanted:
            self._known[p] = None  # looked up: a miss is not asked for again
        for i in range(0, len(wanted), QUERY_CHUNK):
            chunk = tuple(wanted[i : i + QUERY_CHUNK])
            marks = ", ".join("?" * len(chunk))
            for row in self._query(f"SELECT * FROM {TABLE} WHERE path IN ({marks})", chunk):
                self._known[row[0]] = row[1:]

    def save(self) -> None:
        """Store what was read since the last save (nothing if there is no cache)."""
        if self._db is None or not self._new:
            return
        marks = ", ".join("?" * len(COLUMNS))
        self._write(f"INSERT OR REPLACE INTO {TABLE} VALUES ({marks})", self._new)
        self._new = []

    # --- the listings of input directories -----------------------------------------------------

    def refresh_listing(self, input_dir: str | os.PathLike) -> Listing:
        """Bring the cached listing of ``input_dir`` up to date: the directory is listed again
        only if it changed (its mtime or inode) since, and only the names added and removed are
        written. Raises OSError if the directory cannot be listed, :class:`InventoryError` if
        the cache cannot be used or written."""
        if self._db is None:
            raise InventoryError("it cannot be used (see the warning above)")
        key = _dir_key(input_dir)
        st = os.stat(input_dir)
        listed = self._query(f"SELECT mtime_ns, inode FROM {LISTED} WHERE dir = ?", (key,))
        if listed and tuple(listed[0]) == (st.st_mtime_ns, st.st_ino):
            return Listing(key, 0, 0, self.count(input_dir))
        added = set(filter(is_listed_name, os.listdir(input_dir)))  # names only: no DirEntry
        total, removed = len(added), []
        # The names listed before, streamed: what remains of the directory's names is new (an
        # archive's millions of names are held once, not twice).
        for (name,) in self._rows(f"SELECT name FROM {LISTING} WHERE dir = ?", (key,)):
            try:
                added.remove(name)
            except KeyError:
                removed.append(name)
        if self._db is None:  # it could not be read: the warning said why
            raise InventoryError("its listing of the directory cannot be read")
        added, removed = sorted(added), sorted(removed)  # in key order: B-tree appends
        written = self._write(
            f"INSERT OR IGNORE INTO {LISTING} VALUES (?, ?)",
            ((key, name) for name in added),
            (f"DELETE FROM {LISTING} WHERE dir = ? AND name = ?", ((key, n) for n in removed)),
            (
                f"INSERT OR REPLACE INTO {LISTED} VALUES (?, ?, ?, ?)",
                [(key, st.st_mtime_ns, st.st_ino, time.time())],
            ),
        )
        if not written:
            raise InventoryError("its listing of the directory cannot be written")
        return Listing(key, len(added), len(removed), total)

    def listed(self, input_dir: str | os.PathLike) -> bool:
        """Whether the cache holds a listing of ``input_dir`` (:meth:`refresh_listing`)."""
        return bool(self._query(f"SELECT 1 FROM {LISTED} WHERE dir = ?", (_dir_key(input_dir),)))

    def names(self, input_dir: str | os.PathLike, first: str = "", last: str = "~") -> list[str]:
        """The names in the listing of ``input_dir`` whose first characters (a subband file's
        timestamp) are from ``first`` to ``last`` inclusive, and every name that does not start
        with a digit (discovery reports them): an indexed range query, in name order."""
        if (first, last) == ("", "~"):  # every name
            rows = self._query(
                f"SELECT name FROM {LISTING} WHERE dir = ? ORDER BY name", (_dir_key(input_dir),)
            )
        else:  # three ranges of the key (one OR of them is a scan of every name)
            rows = self._query(
                f"SELECT name FROM {LISTING} WHERE dir = ?1 AND name < '0' UNION "
                f"SELECT name FROM {LISTING} WHERE dir = ?1 AND name >= ?2 AND name <= ?3 UNION "
                f"SELECT name FROM {LISTING} WHERE dir = ?1 AND name >= ':' ORDER BY name",
                (_dir_key(input_dir), first, last + "~"),
            )
        return [r[0] for r in rows]

    def count(
        self,
        input_dir: str | os.PathLike,
        first: str = "",
        last: str = "~",
        subband: int | None = None,
    ) -> int:
        """How many names the listing of ``input_dir`` holds from ``first`` to ``last`` (of
        ``subband`` only, if given)."""
        only = "" if subband is None else f" AND name LIKE '%\\_sb{subband:02d}.hdf5' ESCAPE '\\'"
        rows = self._query(
            f"SELECT count(*) FROM {LISTING} WHERE dir = ? AND name >= ? AND name <= ?{only}",
            (_dir_key(input_dir), first, last + "~"),
        )
        return rows[0][0] if rows else 0

    def fingerprint(
        self, input_dir: str | os.PathLike, first: str = "", last: str = "~"
    ) -> tuple[int, str]:
        """How many names the listing of ``input_dir`` holds from ``first`` to ``last``, and a
        checksum of them (their lengths and the day, time and subband their names say, summed:
        a file added, removed or renamed changes it), in one indexed range scan."""
        rows = self._query(
            "SELECT count(*), total(length(name)), total("
            "CAST(substr(name, 9, 2) AS INTEGER) * 86400 + CAST(substr(name, 12, 2) AS INTEGER)"
            " * 3600 + CAST(substr(name, 15, 2) AS INTEGER) * 60 + CAST(substr(name, 18, 2) AS "
            "INTEGER) + CAST(substr(name, 23, 2) AS INTEGER) * 10000000) "
            f"FROM {LISTING} WHERE dir = ? AND name >= ? AND name <= ?",
            (_dir_key(input_dir), first, last + "~"),
        )
        count, lengths, times = rows[0] if rows else (0, 0.0, 0.0)
        return count, f"{count}:{int(lengths)}:{int(times)}"

    def first_and_last(self, input_dir: str | os.PathLike) -> tuple[str, str] | None:
        """The first and last names in the listing of ``input_dir`` that start with a digit."""
        rows = self._query(
            f"SELECT min(name), max(name) FROM {LISTING} WHERE dir = ? AND name >= '0' "
            "AND name < ':'",
            (_dir_key(input_dir),),
        )
        return (rows[0][0], rows[0][1]) if rows and rows[0][0] is not None else None


@dataclass(frozen=True)
class Listing:
    """What :meth:`Inventory.refresh_listing` did to the listing of ``dir``: names added and
    removed, and how many the directory holds."""

    dir: str
    added: int
    removed: int
    total: int


class InventoryError(Exception):
    """The inventory cannot serve as the listing of an input directory."""


#: Most paths one query asks for (SQLite allows 32,766 parameters).
QUERY_CHUNK = 10_000
#: Files still being written end with this (their group waits for them).
INCOMPLETE_SUFFIX = "_incomplete.hdf5"


def _dir_key(input_dir: str | os.PathLike) -> str:
    """An input directory as listings name it: its absolute path, symlinks resolved."""
    return os.path.realpath(input_dir)


def is_listed_name(name: str) -> bool:
    """Whether discovery looks at an entry of an input directory: ``*.hdf5`` but not
    ``*_incomplete.hdf5``."""
    return name.endswith(".hdf5") and not name.endswith(INCOMPLETE_SUFFIX)


class _LaterLayout(Exception):
    """The cache was written by a later version of the package (a later layout)."""


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


#: Every table of this version's layout, as SQLite keeps its CREATE statement.
TABLES = {TABLE: SCHEMA, LISTING: LISTING_SCHEMA, LISTED: LISTED_SCHEMA}


def _is_this_layout(db: sqlite3.Connection) -> bool:
    tables = dict(db.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'table'"))
    return db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION and tables == TABLES


def _ensure_layout(db: sqlite3.Connection) -> None:
    """Make the cache this version's layout: an earlier one (or a table not as this version
    makes it) is emptied and rebuilt, in one transaction; a later one raises
    :class:`_LaterLayout`. Raises :class:`sqlite3.DatabaseError` for a file SQLite cannot read."""
    if _is_this_layout(db):
        return
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise _LaterLayout(f"written by a later version of dsa110ms (layout {version})")
    db.execute("BEGIN IMMEDIATE")
    try:
        if _is_this_layout(db):  # another process may have made it meanwhile
            db.execute("COMMIT")
            return
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_schema WHERE type='table'")]
        # our cache's own tables, of earlier layouts (not SQLite's own)
        tables = [t for t in tables if not t.startswith("sqlite_")]
        for name in tables:
            db.execute(f'DROP TABLE "{name}"')
        for schema in TABLES.values():
            db.execute(schema)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if tables:  # a new cache is not news
        log.info(
            "inventory cache: layout %d -> %d (rebuilt; headers are read again)",
            version,
            SCHEMA_VERSION,
        )
