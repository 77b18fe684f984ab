"""Discovery of complete subband groups in an input directory.

A DSA-110 observation is 16 files ``YYYY-MM-DDTHH:MM:SS_sbNN.hdf5`` whose names carry the wall
clock of the correlator node that opened them, so they differ by a few seconds. Files are grouped
around each sb00 file: a file belongs to the sb00 nearest in time if within ``tolerance_s`` (at
most :data:`MAX_TOLERANCE_S`). The group id is the timestamp in the name of the sb00 file the group
converts (after duplicates are resolved), or, for a group without sb00 converted under
``incomplete_groups=convert``, of its earliest file; every file of a group is within
``tolerance_s`` of its id. ``*_incomplete.hdf5`` files are still being written and are ignored.

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
import datetime as dt
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from dsa110ms.errors import DiscoveryError
from dsa110ms.manifest import Group, Manifest, Skipped
from dsa110ms.telescope import N_SUBBANDS

log = logging.getLogger(__name__)

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"
TIMESTAMP_PATTERN = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}"
FILE_PATTERN = re.compile(rf"^(?P<timestamp>{TIMESTAMP_PATTERN})_sb(?P<subband>\d{{2}})\.hdf5$")
INCOMPLETE_SUFFIX = "_incomplete.hdf5"

#: The largest tolerance_s (s), as in dsa110ms/schema.yaml: below half the ~309.2 s between the
#: sb00 files of two consecutive observations, so that one window never holds both.
MAX_TOLERANCE_S = 150

INCOMPLETE_POLICIES = ("skip", "fail", "convert")
DUPLICATE_POLICIES = ("skip", "fail", "latest")


def format_timestamp(t: dt.datetime) -> str:
    return t.strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> dt.datetime:
    """A ``TIMESTAMP_PATTERN`` string as a datetime (fromisoformat: ~10x faster than strptime,
    which matters for a backlog of 16,000 files)."""
    return dt.datetime.fromisoformat(text)


def subband_file_name(t: dt.datetime, subband: int) -> str:
    return f"{format_timestamp(t)}_sb{subband:02d}.hdf5"


@dataclass(frozen=True, order=True)
class SubbandFile:
    """One input file: its name's timestamp, its subband number (0 = highest frequency)."""

    time: dt.datetime
    subband: int
    path: str

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> SubbandFile | None:
        """Parse a file name; None if it does not follow the pattern."""
        m = FILE_PATTERN.match(Path(path).name)
        if not m:
            return None
        try:
            t = parse_timestamp(m["timestamp"])
        except ValueError:  # e.g. month 13: matches the pattern, is not a time
            return None
        return cls(t, int(m["subband"]), str(path))


def scan(input_dir: str | os.PathLike) -> tuple[list[SubbandFile], list[str]]:
    """Subband files in ``input_dir`` (not recursive) and notes on names that were ignored."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise DiscoveryError(f"{input_dir}: input directory does not exist or is not a directory")
    files, notes = [], []
    for entry in sorted(os.scandir(input_dir), key=lambda e: e.name):
        if not entry.name.endswith(".hdf5"):
            continue
        if entry.name.endswith(INCOMPLETE_SUFFIX):
            continue  # still being written: its group waits for the renamed file
        f = SubbandFile.from_path(entry.path)
        if f is None:
            notes.append(
                Skipped(
                    entry.path,
                    "not named YYYY-MM-DDTHH:MM:SS_sbNN.hdf5, ignored; rename it or move it "
                    "out of input_dir",
                )
            )
            continue
        if f.subband >= N_SUBBANDS:
            notes.append(
                Skipped(
                    entry.path,
                    f"unknown subband sb{f.subband:02d} (DSA-110 has sb00-sb15), ignored; rename "
                    "it or move it out of input_dir",
                )
            )
            continue
        files.append(f)
    return files, notes


def unreadable(path: str) -> str | None:
    """Why this process cannot read ``path``, or None if it can. Snakemake itself fails on such
    inputs, so they never reach a job: their group is skipped with this reason."""
    if os.access(path, os.R_OK):
        return None
    if os.path.islink(path) and not os.path.exists(path):
        return f"dangling symlink (target {os.readlink(path)} does not exist)"
    if not os.path.lexists(path):
        return "removed since the input directory was scanned"
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


def _id_file(chosen: dict[int, SubbandFile]) -> SubbandFile:
    """The file whose name gives the group its id: sb00, else the earliest."""
    return chosen[0] if 0 in chosen else min(chosen.values())


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


def discover(
    input_dir: str | os.PathLike,
    *,
    tolerance_s: float = 60.0,
    start_time: str | None = None,
    end_time: str | None = None,
    incomplete_groups: str = "skip",
    duplicate_subbands: str = "skip",
    only: list[str] | None = None,
) -> Manifest:
    """Find the groups to convert in ``input_dir``.

    ``start_time``/``end_time`` (``YYYY-MM-DDTHH:MM:SS``, inclusive) select groups by id;
    ``only``, if given, selects these group ids (the streaming mode's batches), and files that
    belong to no group are then not reported (they belong to groups still arriving).
    Warnings for everything skipped are logged and kept in ``Manifest.skipped``.
    ``tolerance_s`` is in seconds, 0 < tolerance_s <= :data:`MAX_TOLERANCE_S`.
    """
    if not 0 < tolerance_s <= MAX_TOLERANCE_S:  # also refuses NaN
        raise DiscoveryError(
            f"tolerance_s={tolerance_s}: must be more than 0 and at most {MAX_TOLERANCE_S} s "
            "(below half the time between observations)"
        )
    if incomplete_groups not in INCOMPLETE_POLICIES:
        raise DiscoveryError(f"incomplete_groups must be one of {INCOMPLETE_POLICIES}")
    if duplicate_subbands not in DUPLICATE_POLICIES:
        raise DiscoveryError(f"duplicate_subbands must be one of {DUPLICATE_POLICIES}")
    tolerance = dt.timedelta(seconds=tolerance_s)
    lo = parse_timestamp(start_time) if start_time else None
    hi = parse_timestamp(end_time) if end_time else None

    files, notes = scan(input_dir)
    manifest = Manifest(str(Path(input_dir).resolve()))
    manifest.skipped.extend(notes)
    clusters, orphans = _cluster(files, tolerance)
    if orphans and incomplete_groups == "convert":
        clusters += _cluster_orphans(orphans, tolerance)
        orphans = []
    for f in orphans:
        if (lo and f.time < lo - tolerance) or (hi and f.time > hi + tolerance) or only:
            continue
        manifest.skipped.append(
            Skipped(
                f.path, f"no sb00 file within {tolerance_s:g} s, so it belongs to no complete group"
            )
        )
    for members in clusters:
        # The id comes from the files `latest` keeps, whatever duplicate_subbands says, so that a
        # group's id is the same under every policy (the stream scans with `latest` and runs
        # each batch with the configured policy, naming its groups by id).
        latest, dups = _latest_of_each(members)
        named_by = _id_file(latest)
        gid = format_timestamp(named_by.time)
        if (lo and named_by.time < lo) or (hi and named_by.time > hi):
            continue
        if only is not None and gid not in only:
            continue
        reason = _duplicates(gid, dups, duplicate_subbands) if dups else None
        if reason:
            manifest.skipped.append(reason)
            continue
        # Only after `latest` replaced a duplicate sb00 can a file be farther than tolerance from
        # the id (the cluster was anchored on the earliest sb00): never convert it under that id.
        far = sorted(f for f in latest.values() if abs(f.time - named_by.time) > tolerance)
        if far:
            manifest.skipped.append(
                Skipped.group_of(
                    gid,
                    f"skipped, {', '.join(Path(f.path).name for f in far)} more than "
                    f"{tolerance_s:g} s from {Path(named_by.path).name}, whose name is the "
                    "group's id; move the files that do not belong to it out of input_dir",
                )
            )
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
    for reason in manifest.skipped:
        log.warning("%s", reason)
    if not manifest.groups:
        group_skips = manifest.skipped[len(notes) :]  # not the notes on file names
        manifest.empty_reason = _why_nothing(
            manifest.input_dir, files, group_skips, start_time, end_time, only
        )
    return manifest


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
