"""What the streaming mode (:mod:`dsa110ms.stream`) knows: the groups seen in the input
directory (:func:`scan`) and what it decided about each, kept across restarts
(:class:`StreamState`, ``<log_dir>/stream/state.json``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from dsa110ms.files import write_text_atomically
from dsa110ms.groups import (
    INCOMPLETE_SUFFIX,
    TIMESTAMP_PATTERN,
    discover,
    parse_timestamp,
)
from dsa110ms.settings import Settings

TIMESTAMP = re.compile(TIMESTAMP_PATTERN)


@dataclass
class Candidate:
    """A group seen in the input directory."""

    id: str
    files: list[str]
    missing: list[int]
    last_arrival: float  # newest change time (rename) of its files, Unix s
    writing: bool  # a file of it is still being written


@dataclass
class StreamState:
    """What the stream decided about groups it did not publish (and latencies of those it
    did), kept across restarts in ``path``."""

    path: Path
    groups: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> StreamState:
        groups = json.loads(path.read_text()) if path.exists() else {}
        return cls(path, groups)

    def save(self) -> None:
        write_text_atomically(self.path, json.dumps(self.groups, indent=1, sort_keys=True))

    def settled(self, candidate: Candidate) -> bool:
        """Skipped or failed already, for the same files."""
        entry = self.groups.get(candidate.id)
        return bool(
            entry and entry["status"] in ("skipped", "failed") and entry["files"] == candidate.files
        )

    def record(self, candidate: Candidate, status: str, files=None, **fields) -> None:
        """``files``: the file names the group was converted from, if not the candidate's."""
        files = candidate.files if files is None else files
        self.groups[candidate.id] = {"status": status, "files": files, **fields}

    def published_by_file(self) -> dict[str, str]:
        """File name -> the group the stream published it in."""
        return {
            name: gid
            for gid, entry in self.groups.items()
            if entry["status"] == "published"
            for name in entry["files"]
        }


def _being_written(input_dir: Path) -> list[dt.datetime]:
    """The times in the names of the files still being written (``*_incomplete.hdf5``)."""
    try:
        names = os.listdir(input_dir)
    except OSError:  # gone since discovery listed it: the next poll says why
        return []
    times = []
    for name in names:
        if name.endswith(INCOMPLETE_SUFFIX) and (m := TIMESTAMP.match(name)):
            try:
                times.append(parse_timestamp(m[0]))
            except ValueError:  # no time (month 13): discovery reports the renamed file
                continue
    return times


def scan(settings: Settings) -> tuple[list[Candidate], list[str]]:
    """Every group in the input directory, whatever its state (discovery with the policy that
    keeps incomplete groups, so that waiting ones are seen), and discovery's reasons for what it
    left out."""
    input_dir = Path(settings.input_dir)
    if not input_dir.is_dir():
        return [], []
    manifest = discover(
        input_dir,
        tolerance_s=settings.tolerance_s,
        start_time=settings.start_time,
        end_time=settings.end_time,
        incomplete_groups="convert",
        duplicate_subbands="latest",
        telescope=settings.telescope,
        inventory=settings.inventory,  # the stream polls; the files stay
    )
    writing = _being_written(input_dir)
    tolerance = settings.tolerance_s
    candidates = []
    for group in manifest:
        t0 = parse_timestamp(group.id)
        files = sorted(os.path.basename(p) for p in group.files.values())
        try:
            arrival = max(os.stat(p).st_ctime for p in group.files.values())
        except FileNotFoundError:  # renamed or removed since the scan: next poll
            continue
        candidates.append(
            Candidate(
                id=group.id,
                files=files,
                missing=list(group.missing_subbands),
                last_arrival=arrival,
                writing=any(abs((t - t0).total_seconds()) <= tolerance for t in writing),
            )
        )
    return candidates, manifest.skipped
