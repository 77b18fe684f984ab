"""Discovery of complete subband groups in an input directory.

A DSA-110 observation is 16 files ``YYYY-MM-DDTHH:MM:SS_sbNN.hdf5`` whose names carry the wall
clock of the correlator node that opened them, so they differ by a few seconds. Files are grouped
by name around each sb00 file: a file belongs to the sb00 nearest in time if within
``tolerance_s`` (at most :data:`MAX_TOLERANCE_S`); files without an sb00 near them cluster
around their earliest (``incomplete_groups=convert`` only). ``*_incomplete.hdf5`` files are still
being written and are ignored; only regular files (or symlinks to them) are ever opened, and
an entry that cannot be looked at (a symlink loop, an I/O error...) is one line, never a stop.

A group's **id** is when its data start: the start of its first integration
(``time_array[0] - integration_time[0] / 2``, read from the files by :mod:`dsa110ms.inventory`),
UTC, rounded to the nearest second, taken from the first integration most of its files hold
(ties: the lowest subband's). The 16 subbands of one DSA-110 observation share a bit-identical
``time_array[0]`` and ``integration_time[0]``, so the id is the same however the files are named
or arrive (a late sb00 named 03:00:02 joins the group its data belong to: one observation, one
MS), and one odd file never renames the group. The files' names must agree with their data:

- a file named more than ``tolerance_s`` from the time its own data start is mislabelled;
- (``telescope: dsa110``) a file whose ``time_array[0]`` or ``integration_time[0]`` differs
  from what most files of its group hold belongs to another observation, or is not what it
  says; (``generic``) one whose data start more than ``tolerance_s`` from the group's;

either skips the whole group with one line naming the files and both values (converting the rest
would publish an MS that the corrected file could only contradict later). If no file of a group
can be read, its id is the time in its sb00's name (else its earliest file's) and the jobs
report the files; a file that cannot be read while others can leaves the id to the others.

Policies (config keys ``incomplete_groups`` and ``duplicate_subbands``):

- incomplete group (a subband missing, or no sb00 within tolerance):
  ``skip`` (default) warns and converts nothing; ``fail`` stops discovery with an error;
  ``convert`` converts the subbands present (the MS has fewer SPWs; a warning names the gaps).
- duplicate subband in a group (two files with the same sbNN, e.g. a re-sent file):
  ``skip`` (default) warns and skips the group; ``fail`` stops; ``latest`` keeps the file with the
  latest timestamp in its name.

The result is a :class:`dsa110ms.manifest.Manifest`, written once per run by the main Snakemake
process and read by every other process of the run, so all of them see the same groups.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import errno
import logging
import math
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from dsa110ms.errors import DiscoveryError
from dsa110ms.inventory import INCOMPLETE_SUFFIX as INCOMPLETE_SUFFIX  # discovery's, re-exported
from dsa110ms.inventory import (
    FirstIntegration,
    HeaderError,
    Inventory,
    is_listed_name,
)
from dsa110ms.manifest import Group, Manifest, Skipped
from dsa110ms.telescope import N_SUBBANDS

log = logging.getLogger(__name__)

#: ASCII digits only: Python's ``\d`` also matches other scripts' digits (``_sb٠٥``).
TIMESTAMP_PATTERN = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
#: Characters of a timestamp in a file name (``YYYY-MM-DDTHH:MM:SS``), which sort as the times.
TIMESTAMP_LENGTH = 19
FILE_PATTERN = re.compile(rf"^(?P<timestamp>{TIMESTAMP_PATTERN})_sb(?P<subband>[0-9]{{2}})\.hdf5$")
#: A leap second's name: UTC's 61st second of a minute, only ever at the end of a day.
LEAP_SECOND = "T23:59:60"

#: The largest tolerance_s (s), as in dsa110ms/schema.yaml: below half the ~309.2 s between the
#: sb00 files of two consecutive observations, so that one window never holds both.
MAX_TOLERANCE_S = 150

INCOMPLETE_POLICIES = ("skip", "fail", "convert")
DUPLICATE_POLICIES = ("skip", "fail", "latest")
TELESCOPES = ("dsa110", "generic")

#: Julian Date of 1970-01-01T00:00:00 UTC.
JD_UNIX_EPOCH = 2440587.5
UNIX_EPOCH = dt.datetime(1970, 1, 1)
LAST_SECOND = dt.datetime(9999, 12, 31, 23, 59, 59)

#: What a directory entry is, when it is not a regular file (it is then never opened).
NOT_REGULAR = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def format_timestamp(t: dt.datetime) -> str:
    """``t`` as ``YYYY-MM-DDTHH:MM:SS`` (fraction of a second dropped). isoformat, not
    strftime: strftime writes the year 900 as ``900``, which is not the form."""
    return t.isoformat(timespec="seconds")


def format_precisely(t: dt.datetime, other: dt.datetime) -> str:
    """``t`` to the second, or with its fraction (ms, else µs) when it is less than a second
    from ``other``: so that two times said to differ never read the same."""
    if abs(t - other) >= dt.timedelta(seconds=1):
        return format_timestamp(to_the_second(t))
    return t.isoformat(timespec="milliseconds" if t.microsecond % 1000 == 0 else "microseconds")


def parse_timestamp(text: str) -> dt.datetime:
    """A ``TIMESTAMP_PATTERN`` string (a file's name, a config time, a group id) as a datetime;
    ValueError if it is not a real time. A leap second (``23:59:60``, which a datetime cannot
    hold) is 23:59:59 + 1 s, the next day's 00:00:00, as POSIX time counts it: a second off at
    most. (fromisoformat: ~10x faster than strptime, which matters for 16,000 files.)"""
    if text.endswith(LEAP_SECOND):
        return parse_timestamp(text[: -len(LEAP_SECOND)] + "T23:59:59") + dt.timedelta(seconds=1)
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError as exc:
        leap = "; a leap second is 23:59:60" if text.endswith(":60") else ""
        raise ValueError(f"{exc}{leap}") from None


def reversed_window(start_time: str | None, end_time: str | None) -> str | None:
    """Why the window ``start_time``..``end_time`` (both inclusive) can hold nothing, if its
    bounds are reversed; None otherwise (also for a bound that is None: unbounded)."""
    if start_time and end_time and parse_timestamp(start_time) > parse_timestamp(end_time):
        return (
            f"start_time={start_time} is after end_time={end_time}: the two bounds are "
            "reversed; swap them"
        )
    return None


def subband_file_name(t: dt.datetime, subband: int) -> str:
    return f"{format_timestamp(t)}_sb{subband:02d}.hdf5"


def jd_from_datetime(t: dt.datetime) -> float:
    """JD (UTC) of a naive UTC datetime, counting 86,400 s a day (POSIX time)."""
    return (t - UNIX_EPOCH).total_seconds() / 86400.0 + JD_UNIX_EPOCH


def datetime_from_jd(jd: float) -> dt.datetime | None:
    """The naive UTC datetime of a JD (UTC), to the microsecond, counting 86,400 s a day (POSIX
    time: the data of a leap second read as the next day's first second); None if ``jd`` is no
    date a datetime can hold (NaN, 0, 1e300)."""
    try:
        t = UNIX_EPOCH + dt.timedelta(days=jd - JD_UNIX_EPOCH)
    except (OverflowError, ValueError):
        return None
    return t if t < LAST_SECOND else None  # rounding to the second must not leave the range


def data_start(first: FirstIntegration) -> dt.datetime | None:
    """When a file's data start (UTC): its first integration's centre minus half its length."""
    return datetime_from_jd(first.time_jd - first.integration_s / 2 / 86400.0)


def to_the_second(t: dt.datetime) -> dt.datetime:
    """``t`` rounded to the nearest second (half a second up)."""
    return (t + dt.timedelta(microseconds=500_000)).replace(microsecond=0)


@dataclass(frozen=True, order=True)
class SubbandFile:
    """One input file: its name's timestamp, its subband number (0 = highest frequency)."""

    time: dt.datetime
    subband: int
    path: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def name_time(self) -> str:
        """The timestamp as written in the name (``23:59:60`` for a leap second)."""
        return self.name[:19]

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> SubbandFile | None:
        """Parse a file name; None if it does not follow the pattern."""
        parsed = _parse_name(Path(path).name)
        return cls(parsed[0], parsed[1], str(path)) if isinstance(parsed, tuple) else None


def _parse_name(name: str) -> tuple[dt.datetime, int] | str:
    """(time, subband) of a subband file's name, or why the name is not one."""
    m = FILE_PATTERN.match(name)
    if not m:
        return (
            "not named YYYY-MM-DDTHH:MM:SS_sbNN.hdf5 (ASCII digits), ignored; rename it or move "
            "it out of input_dir"
        )
    try:
        return parse_timestamp(m["timestamp"]), int(m["subband"])
    except ValueError as exc:  # e.g. month 13: matches the pattern, is not a time
        return (
            f"named {m['timestamp']}, which is not a UTC time ({exc}), ignored; rename it "
            "or move it out of input_dir"
        )


def os_reason(exc: OSError) -> str:
    """An OSError's reason in words, with its errno's name (``Too many levels of symbolic
    links, ELOOP``)."""
    name = errno.errorcode.get(exc.errno or 0)
    words = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
    return f"{words}, {name}" if name else words


def _never_opened(entry: os.DirEntry) -> str | None:
    """Why ``entry`` is never opened, if it is not a regular file or a symlink to one (a FIFO
    would block the reader forever), or if it cannot be looked at (a symlink loop, a target
    behind a directory without permission, a name too long, an I/O error); None for a regular
    file, and for a symlink whose target does not exist (its group reports it:
    :func:`unreadable`)."""
    try:
        if entry.is_file():  # follows symlinks; stats nothing for a plain file (d_type)
            return None
        mode = entry.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return (
            f"cannot be looked at ({os_reason(exc)}): never read, ignored; fix it or move it "
            "out of input_dir"
        )
    kind = NOT_REGULAR.get(stat.S_IFMT(mode), "of an unknown kind")
    return f"{kind}, not a regular file: never read, ignored; move it out of input_dir"


def _list_dir(input_dir: Path, first: str, last: str) -> list[os.DirEntry]:
    """The entries of ``input_dir`` discovery looks at: subband files named from ``first`` to
    ``last`` (timestamps) and every name that is not a subband file's (reported), never an
    ``_incomplete`` file (still being written: its group waits). Picked as the directory is
    read, with the cheapest test first (an archive's millions of entries are never all held,
    and each costs a string comparison: no parse, no stat). DiscoveryError with the reason if
    the directory cannot be listed (missing, not a directory, no permission, an I/O error)."""
    match, listed = FILE_PATTERN.match, is_listed_name
    try:
        with os.scandir(input_dir) as it:
            return [
                e
                for e in it
                if (first <= e.name[:TIMESTAMP_LENGTH] <= last or not match(e.name))
                and listed(e.name)
            ]
    except FileNotFoundError:
        raise DiscoveryError(
            f"{input_dir}: input directory does not exist or is not a directory"
        ) from None
    except NotADirectoryError:
        raise DiscoveryError(f"{input_dir}: input_dir is not a directory") from None
    except OSError as exc:
        raise DiscoveryError(
            f"{input_dir}: input directory cannot be read ({exc.strerror or exc}); check "
            "input_dir and its permissions"
        ) from None


class _ListedEntry:
    """An input file the inventory's listing names, looked at as :func:`_never_opened` looks at
    a directory entry (each call stats it)."""

    def __init__(self, input_dir: Path, name: str):
        self.name, self.path = name, os.path.join(input_dir, name)

    def is_file(self) -> bool:
        return stat.S_ISREG(self.stat().st_mode)

    def stat(self) -> os.stat_result:
        return os.stat(self.path)


def _listed_entries(input_dir: Path, inventory: Inventory, first: str, last: str) -> list:
    """The entries the inventory's listing of ``input_dir`` names between ``first`` and
    ``last`` (as :func:`scan` wants them); DiscoveryError if it has no listing of it."""
    if not inventory.listed(input_dir):
        where = inventory.path or "the inventory (it cannot be used)"
        raise DiscoveryError(
            f"{input_dir}: input_listing=inventory, but {where} holds no listing of it; "
            "python -m dsa110ms.archive makes and refreshes it (or set input_listing=directory)"
        )
    return [_ListedEntry(input_dir, name) for name in inventory.names(input_dir, first, last)]


def scan(
    input_dir: str | os.PathLike,
    names_between: tuple[str, str] | None = None,
    listing: Inventory | None = None,
) -> tuple[list[SubbandFile], list[str]]:
    """Subband files in ``input_dir`` (not recursive), by name, and notes on entries that were
    ignored. ``names_between``: the first and last timestamps (as file names write them) of the
    files wanted: the others are left out unread (a window of a large archive costs a string
    comparison per name, no parsing, no stat). ``listing``: take the names from this
    inventory's listing of ``input_dir`` (an indexed query of the window), not from the
    directory; a name listed there but gone from the directory is a note."""
    input_dir = Path(input_dir)
    files, notes = [], []
    first, last = names_between or ("", "~")

    if listing is not None:
        entries = _listed_entries(input_dir, listing, first, last)
    else:
        entries = _list_dir(input_dir, first, last)
    for entry in sorted(entries, key=lambda e: e.name):
        parsed = _parse_name(entry.name)
        if isinstance(parsed, str):
            notes.append(Skipped(entry.path, parsed))
            continue
        t, subband = parsed
        if subband >= N_SUBBANDS:
            notes.append(
                Skipped(
                    entry.path,
                    f"unknown subband sb{subband:02d} (DSA-110 has sb00-sb15), ignored; rename "
                    "it or move it out of input_dir",
                )
            )
            continue
        if listing is not None and not os.path.lexists(entry.path):
            notes.append(
                Skipped(
                    entry.path,
                    f"listed in the inventory {listing.path} but gone from input_dir: left "
                    "out (its group is incomplete without it); the next archive run lists "
                    "input_dir again",
                )
            )
            continue
        why = _never_opened(entry)
        if why:
            notes.append(Skipped(entry.path, why))
            continue
        files.append(SubbandFile(t, subband, entry.path))
    return files, notes


def unreadable(path: str) -> str | None:
    """Why this process cannot read ``path``, or None if it can. Snakemake itself fails on such
    inputs, so they never reach a job: their group is skipped with this reason."""
    try:
        os.stat(path)
    except FileNotFoundError:
        try:
            return f"dangling symlink (target {os.readlink(path)} does not exist)"
        except OSError:  # not a symlink (or gone too)
            return "removed since the input directory was scanned"
    except OSError as exc:  # changed since the scan (a loop, a directory's permission...)
        return f"cannot be looked at ({os_reason(exc)})"
    if os.access(path, os.R_OK):
        return None
    return "not readable (permission denied)"


def _cluster(files: list[SubbandFile], tolerance: dt.timedelta) -> tuple[list[list], list]:
    """Clusters anchored on sb00 files (sb00 files within tolerance of each other merge).

    Returns (clusters, orphans); each cluster's first element is its earliest sb00 file.
    """
    anchors: list[list[SubbandFile]] = []
    for f in sorted(x for x in files if x.subband == 0):
        if anchors and f.time - anchors[-1][0].time <= tolerance:
            anchors[-1].append(f)  # a second sb00 of the same observation: a duplicate
        else:
            anchors.append([f])
    starts = [c[0].time for c in anchors]  # ascending
    orphans = []
    for f in sorted(x for x in files if x.subband != 0):
        i = bisect.bisect_left(starts, f.time)  # the nearest anchor is at i - 1 or i
        near = anchors[max(i - 1, 0) : i + 1]
        nearest = min(near, key=lambda c: abs(f.time - c[0].time), default=None)
        if nearest is not None and abs(f.time - nearest[0].time) <= tolerance:
            nearest.append(f)
        else:
            orphans.append(f)
    return anchors, orphans


def _cluster_orphans(orphans: list[SubbandFile], tolerance: dt.timedelta) -> list[list]:
    """Groups without sb00, clustered on their earliest file (only under ``convert``)."""
    clusters: list[list[SubbandFile]] = []
    for f in sorted(orphans):
        if clusters and f.time - clusters[-1][0].time <= tolerance:
            clusters[-1].append(f)
        else:
            clusters.append([f])
    return clusters


def _latest_of_each(members: list[SubbandFile]) -> tuple[dict[int, SubbandFile], dict]:
    """The latest file of each subband, and the subbands with more than one file (all of them)."""
    by_sb: dict[int, list[SubbandFile]] = {}
    for f in sorted(members):
        by_sb.setdefault(f.subband, []).append(f)
    return {sb: fs[-1] for sb, fs in by_sb.items()}, {sb: fs for sb, fs in by_sb.items() if fs[1:]}


def _name_file(chosen: dict[int, SubbandFile]) -> SubbandFile:
    """The file whose name stands for the group's time before its data are read: sb00, else the
    earliest."""
    return chosen[0] if 0 in chosen else min(chosen.values())


def _in_window(t, lo, hi, slack: dt.timedelta = dt.timedelta(0)) -> bool:
    """``lo - slack <= t <= hi + slack`` (None: unbounded), computed as differences, which
    never overflow (``lo - slack`` does at 0001-01-01, ``hi + slack`` at 9999-12-31)."""
    return (lo is None or t - lo >= -slack) and (hi is None or hi - t >= -slack)


@dataclass
class _Reference:
    """The first integration a group's files share: the one (``time_array[0]`` and
    ``integration_time[0]`` both) most of its files hold (ties: the lowest subband's), and that
    subband."""

    first: FirstIntegration
    start: dt.datetime
    subband: int

    @property
    def id(self) -> str:
        return format_timestamp(to_the_second(self.start))


class _Headers:
    """The first integrations of one discovery's files, each read once (from ``inventory``);
    a file that cannot be read is logged once and is None (its job, or :func:`unreadable`,
    reports it)."""

    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        self._read: dict[str, FirstIntegration | None] = {}

    def of(self, chosen: dict[int, SubbandFile]) -> dict[int, FirstIntegration | None]:
        return {sb: self._first(f.path) for sb, f in chosen.items()}

    def _first(self, path: str) -> FirstIntegration | None:
        if path not in self._read:
            try:
                self._read[path] = self.inventory.first_integration(path)
            except HeaderError as exc:
                log.info("%s: first integration not read (%s)", path, exc)
                self._read[path] = None
        return self._read[path]


def _reference(firsts: dict[int, FirstIntegration | None]) -> _Reference | None:
    """The group's shared first integration: the (time_array[0], integration_time[0]) most of
    its dated files hold, so that one odd file (e.g. a late sb00) never names the group; None
    if no file has a readable date."""
    dated = {sb: fi for sb, fi in sorted(firsts.items()) if fi and data_start(fi)}
    if not dated:
        return None
    votes = Counter(dated.values())
    most = max(votes.values())
    sb, first = next((sb, fi) for sb, fi in dated.items() if votes[fi] == most)
    return _Reference(first, data_start(first), sb)


def _no_date(first: FirstIntegration) -> str:
    """Which of a file's two numbers gives no date for its data's start."""
    if datetime_from_jd(first.time_jd) is None:
        return f"time_array[0] = {first.time_jd!r}, which is no date"
    if not math.isfinite(first.integration_s):
        return f"integration_time[0] = {first.integration_s!r} s, which is no length"
    return (
        f"time_array[0] = {first.time_jd!r} and integration_time[0] = "
        f"{first.integration_s!r} s, whose start (the first minus half the second) is no date"
    )


def _first_differs(first: FirstIntegration, start: dt.datetime, ref: _Reference) -> str | None:
    """The items of ``first`` that differ from the group's (DSA-110: both must be equal to the
    bit), as ``(mine) is not sbNN's (theirs)``; None if none differs."""
    mine, theirs = [], []
    if first.time_jd != ref.first.time_jd:
        mine.append(
            f"time_array[0] = {first.time_jd!r}, {start.isoformat(timespec='milliseconds')}"
        )
        theirs.append(f"{ref.first.time_jd!r}, {ref.start.isoformat(timespec='milliseconds')}")
    if first.integration_s != ref.first.integration_s:
        mine.append(f"integration_time[0] = {first.integration_s!r} s")
        theirs.append(f"{ref.first.integration_s!r} s")
    if not mine:
        return None
    return f"({', '.join(mine)}) is not sb{ref.subband:02d}'s ({', '.join(theirs)})"


def _disagreements(
    chosen: dict[int, SubbandFile],
    firsts: dict[int, FirstIntegration | None],
    ref: _Reference | None,
    gid: str,
    telescope: str,
    tolerance_s: float,
) -> list[str]:
    """A phrase for each file whose name or data disagree with its group, naming the file and
    both values (``ref``: the group's shared first integration; None if no file is dated).
    Times are to the second, or finer where they are less than a second apart."""
    tolerance = dt.timedelta(seconds=tolerance_s)
    tol = f"tolerance_s={tolerance_s:g} s"
    gtime = parse_timestamp(gid)
    problems = []
    for sb, f in sorted(chosen.items()):
        first = firsts[sb]
        start = first and data_start(first)
        if first is None:  # not readable here: its name must still fit the group
            if abs(f.time - gtime) > tolerance:
                problems.append(f"{f.name} is named {f.name_time}, more than {tol} from {gid}")
        elif start is None:
            problems.append(f"{f.name} holds {_no_date(first)}")
        elif abs(f.time - start) > tolerance:
            problems.append(
                f"{f.name} is named {f.name_time} but its data start at "
                f"{format_precisely(start, f.time)} (more than {tol} apart): mislabelled"
            )
        elif telescope == "dsa110" and (differs := _first_differs(first, start, ref)):
            problems.append(
                f"{f.name}'s first integration {differs}: DSA-110's subbands of one "
                "observation share it exactly"
            )
        elif telescope != "dsa110" and abs(start - ref.start) > tolerance:
            problems.append(
                f"{f.name}'s data start at {format_precisely(start, ref.start)}, more than "
                f"{tol} from the group's start {format_precisely(ref.start, start)}"
            )
    return problems


def _disagreement(gid: str, problems: list[str]) -> Skipped:
    """One line for a group whose files disagree (at most three named, then how many more)."""
    shown = "; ".join(problems[:3]) + (
        f"; and {len(problems) - 3} more files" if len(problems) > 3 else ""
    )
    return Skipped.group_of(
        gid,
        f"not converted: {shown}. Rename a mislabelled file to the time its data start; move "
        "a file of another observation out of input_dir",
    )


def _group_id(latest: dict[int, SubbandFile], headers: _Headers) -> str:
    """When the files' data start (to the second); if no file can be read, the time in the name
    of sb00, else of the earliest file."""
    ref = _reference(headers.of(latest))
    return ref.id if ref else format_timestamp(_name_file(latest).time)


def _clusters_by_id(clusters, headers, lo, hi, wanted, tolerance) -> dict[str, list]:
    """Clusters whose names are within tolerance of the window (and of a wanted id, if any), by
    id: clusters of one id are merged (one observation's files whose names fell in two
    clusters, e.g. a late sb00 named farther than tolerance from the first). Names first,
    because they are free: a group whose names are not within tolerance of the window cannot
    have its data there either without its files disagreeing."""
    by_id: dict[str, list[SubbandFile]] = {}
    for members in clusters:
        latest, _ = _latest_of_each(members)
        named = _name_file(latest).time
        if not _in_window(named, lo, hi, tolerance):
            continue
        if wanted is not None and not any(_in_window(named, w, w, tolerance) for w in wanted):
            continue
        by_id.setdefault(_group_id(latest, headers), []).extend(members)
    return by_id


def _duplicates(gid: str, dups: dict[int, list[SubbandFile]], policy: str) -> Skipped | None:
    """Apply ``duplicate_subbands``: the reason to skip the group, or None to keep the latest."""
    listing = "; ".join(
        f"sb{sb:02d}: " + ", ".join(Path(f.path).name for f in fs) for sb, fs in dups.items()
    )
    if policy == "fail":
        raise DiscoveryError(f"group {gid}: duplicate subbands ({listing})")
    if policy == "skip":
        return Skipped.group_of(
            gid, f"skipped, duplicate subbands ({listing}); policy duplicate_subbands=skip"
        )
    log.warning("group %s: duplicate subbands (%s); keeping the latest of each", gid, listing)
    return None


def _check_options(tolerance_s, incomplete_groups, duplicate_subbands, telescope) -> None:
    if not 0 < tolerance_s <= MAX_TOLERANCE_S:  # also refuses NaN
        raise DiscoveryError(
            f"tolerance_s={tolerance_s}: must be more than 0 and at most {MAX_TOLERANCE_S} s "
            "(below half the time between observations)"
        )
    if incomplete_groups not in INCOMPLETE_POLICIES:
        raise DiscoveryError(f"incomplete_groups must be one of {INCOMPLETE_POLICIES}")
    if duplicate_subbands not in DUPLICATE_POLICIES:
        raise DiscoveryError(f"duplicate_subbands must be one of {DUPLICATE_POLICIES}")
    if telescope not in TELESCOPES:
        raise DiscoveryError(f"telescope must be one of {TELESCOPES}")


def discover(
    input_dir: str | os.PathLike,
    *,
    tolerance_s: float = 60.0,
    start_time: str | None = None,
    end_time: str | None = None,
    incomplete_groups: str = "skip",
    duplicate_subbands: str = "skip",
    only: list[str] | None = None,
    telescope: str = "dsa110",
    inventory: Inventory | str | os.PathLike | None = None,
    input_listing: str = "directory",
) -> Manifest:
    """Find the groups to convert in ``input_dir``.

    ``start_time``/``end_time`` (``YYYY-MM-DDTHH:MM:SS``, inclusive, None: unbounded) select
    groups by id; ``only``, if given, selects these group ids (the streaming mode's batches), and
    files that belong to no group are then not reported (they belong to groups still arriving).
    Warnings for everything skipped are logged and kept in ``Manifest.skipped``.
    ``tolerance_s`` is in seconds, 0 < tolerance_s <= :data:`MAX_TOLERANCE_S`. ``telescope``:
    ``dsa110`` requires a group's files to share ``time_array[0]`` exactly. ``inventory``: the
    cache of the files' headers (an :class:`Inventory`, or its path:
    config ``inventory``; None reads every file's
    header each time). ``input_listing``: ``directory`` lists ``input_dir``; ``inventory`` takes
    the names from the inventory's listing of it (:meth:`Inventory.refresh_listing`, kept by
    :mod:`dsa110ms.archive`), an indexed query of the window instead of a listing of the archive.
    """
    _check_options(tolerance_s, incomplete_groups, duplicate_subbands, telescope)
    if reversed_bounds := reversed_window(start_time, end_time):
        raise DiscoveryError(reversed_bounds)
    tolerance = dt.timedelta(seconds=tolerance_s)
    lo = parse_timestamp(start_time) if start_time else None
    hi = parse_timestamp(end_time) if end_time else None
    # ids as discovery writes them (a leap second's 23:59:60 is the next day's 00:00:00)
    wanted = sorted(parse_timestamp(g) for g in only) if only is not None else None
    wanted_ids = {format_timestamp(t) for t in wanted} if wanted is not None else None

    times = inventory if isinstance(inventory, Inventory) else Inventory(inventory)
    listing = times if input_listing == "inventory" else None
    files, notes = scan(input_dir, names_near(lo, hi, wanted, tolerance), listing)
    times.preload([f.path for f in files])
    manifest = Manifest(str(Path(input_dir).resolve()))
    manifest.skipped.extend(notes)
    clusters, orphans = _cluster(files, tolerance)
    if orphans and incomplete_groups == "convert":
        clusters += _cluster_orphans(orphans, tolerance)
        orphans = []
    for f in orphans:
        if only is not None or not _in_window(f.time, lo, hi, tolerance):
            continue
        manifest.skipped.append(
            Skipped(
                f.path, f"no sb00 file within {tolerance_s:g} s, so it belongs to no complete group"
            )
        )
    headers = _Headers(times)
    for gid, members in sorted(
        _clusters_by_id(clusters, headers, lo, hi, wanted, tolerance).items()
    ):
        if wanted_ids is not None and gid not in wanted_ids:
            continue
        # The files `latest` keeps are judged whatever duplicate_subbands says, so that a
        # group's id is the same under every policy (the stream scans with `latest` and runs
        # each batch with the configured policy, naming its groups by id).
        latest, dups = _latest_of_each(members)
        firsts = headers.of(latest)
        problems = _disagreements(latest, firsts, _reference(firsts), gid, telescope, tolerance_s)
        if problems:  # reported even if the data fall outside the window: the names are in it
            manifest.skipped.append(_disagreement(gid, problems))
            continue
        if not _in_window(parse_timestamp(gid), lo, hi):
            continue
        reason = _duplicates(gid, dups, duplicate_subbands) if dups else None
        if reason:
            manifest.skipped.append(reason)
            continue
        chosen = {sb: f.path for sb, f in latest.items()}
        group = Group(gid, chosen)
        problem = next(((p, why) for p in chosen.values() if (why := unreadable(p))), None)
        if problem:
            manifest.skipped.append(
                Skipped(problem[0], f"{problem[1]}; group {gid} not converted", group=gid)
            )
            continue
        if group.missing_subbands:
            gaps = ", ".join(f"sb{sb:02d}" for sb in group.missing_subbands)
            if incomplete_groups == "fail":
                raise DiscoveryError(f"group {gid}: incomplete, missing {gaps}")
            if incomplete_groups == "skip":
                manifest.skipped.append(
                    Skipped.group_of(
                        gid, f"skipped, incomplete (missing {gaps}); policy incomplete_groups=skip"
                    )
                )
                continue
            log.warning("group %s: converting without %s (incomplete_groups=convert)", gid, gaps)
        manifest.groups[gid] = group
    times.save()
    for reason in manifest.skipped:
        log.warning("%s", reason)
    if not manifest.groups:
        group_skips = manifest.skipped[len(notes) :]  # not the notes on file names
        if not files:  # what the window left out, to say what the directory holds
            files = scan(input_dir, listing=listing)[0]
        manifest.empty_reason = _why_nothing(
            manifest.input_dir, files, group_skips, start_time, end_time, only
        )
    return manifest


#: How far (in tolerances) outside a window a file's name may be and its group's id inside
#: it: a member's name is within one tolerance of its group's sb00, whose name is within one of
#: the data's start, the group's id; one more for good measure.
NAME_MARGIN_TOLERANCES = 3


def names_near(lo, hi, wanted, tolerance: dt.timedelta) -> tuple[str, str] | None:
    """The file names (their timestamps' first and last) that groups with ids in [lo, hi], or
    among ``wanted``, can have; None for every name."""
    if wanted is not None:
        lo, hi = (wanted[0], wanted[-1]) if wanted else (None, None)
    if lo is None and hi is None:
        return None
    margin = NAME_MARGIN_TOLERANCES * tolerance
    bounds = ["", "~"]  # before and after every timestamp
    for i, (t, sign) in enumerate(((lo, -1), (hi, 1))):
        if t is not None:
            with contextlib.suppress(OverflowError):  # the calendar's ends: unbounded
                bounds[i] = format_timestamp(t + sign * margin)
    return bounds[0], bounds[1]


def _why_nothing(input_dir, files, skipped, start_time, end_time, only) -> str:
    """One line: why discovery found no group to convert, and what to do."""
    if only is not None and not skipped:
        return f"none of the groups {', '.join(only)} is in {input_dir}"
    if not files:
        return (
            f"{input_dir}: no subband files (YYYY-MM-DDTHH:MM:SS_sbNN.hdf5) in it; check "
            "input_dir (snakemake --config input_dir=/path/to/files)"
        )
    if not skipped:
        first, last = format_timestamp(min(files).time), format_timestamp(max(files).time)
        return (
            f"no group in {input_dir} between start_time={start_time} and "
            f"end_time={end_time}; its files span {first} to {last}: widen the window"
        )
    return (
        f"no complete group to convert in {input_dir}: {len(skipped)} skipped, e.g. "
        f"{skipped[0]}; see the warnings above (incomplete_groups=convert converts incomplete "
        "groups)"
    )
