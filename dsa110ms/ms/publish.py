"""Publication: the output directory's state, and a validated MS made visible in one rename.

A validated MS (:mod:`dsa110ms.ms.validate`) is stamped (``dsa110ms_published.json`` inside it:
its group, the options it was made with, what was validated, and the size of every column file,
for a cheap integrity check) and renamed, in one ``rename(2)``, from its staging path to
``<output_dir>/<group>.ms``; then its published stamp, the rule's declared output, is written
(:class:`OutputArea`). Existing outputs: an intact stamped MS is trusted and kept; anything else
at a final path (a partial copy, another tool's output, a published MS that lost a table) is set
aside as ``<group>.ms.invalid-<time>`` and converted again. Nothing at a final path is ever
deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dsa110ms.errors import OutputError
from dsa110ms.files import write_text_atomically
from dsa110ms.ms.validate import MsSummary
from dsa110ms.owned import make_owned_dir, open_own_file, remove_owned
from dsa110ms.settings import Settings

log = logging.getLogger(__name__)


#: Written into every MS we publish (inside the MS directory, before the rename): an MS at the
#: final path without it was not published by this workflow and is not trusted.
STAMP_NAME = "dsa110ms_published.json"
#: This workflow's own directory in ``output_dir`` (marked as ours, :mod:`dsa110ms.owned`):
#: ``published/<group>.json`` (the concat rule's declared output), ``locks/<group>.lock`` (held
#: while a run joins and publishes the group), ``staging/<instance>.<group>/<group>.ms`` (the MS
#: being joined; same file system as the final path, so publication is one rename).
STATE_DIR = ".dsa110ms-output"
#: Its marker kind (:mod:`dsa110ms.owned`).
STATE_KIND = "state of the published MSs"
#: The settings an MS is made with, recorded in its stamp: a later run with other values keeps
#: the MS and says so (:meth:`OutputArea.check_stamps`).
MS_OPTIONS = ("telescope", "keep_autocorrelations", "spw_layout", "join_method", "imaging_columns")


def ms_options(settings: Settings) -> dict:
    options = {k: getattr(settings, k) for k in MS_OPTIONS}
    if settings.telescope == "generic":  # it changes nothing in DSA-110 mode
        options["generic_phasing"] = settings.generic_phasing
    return options


#: How long a join waits for another run holding the group's lock (s) before failing.
GROUP_LOCK_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class OutputArea:
    """Every path of ``output_dir``: published MSs and this workflow's state beside them.

    Snakemake's declared output of a group is its *published stamp*, never the MS: Snakemake
    removes a job's declared outputs before running it and after it fails, and a second run (or
    a rerun after a kill) must never remove a published MS that way."""

    output_dir: Path

    @classmethod
    def of(cls, output_dir: str | os.PathLike) -> OutputArea:
        return cls(Path(os.path.abspath(output_dir)))

    @property
    def state_dir(self) -> Path:
        return self.output_dir / STATE_DIR

    def final_ms(self, group: str) -> Path:
        return self.output_dir / f"{group}.ms"

    def stamp(self, group: str) -> Path:
        return self.state_dir / "published" / f"{group}.json"

    def lock(self, group: str) -> Path:
        return self.state_dir / "locks" / f"{group}.lock"

    def staging_dir(self, instance: str, group: str) -> Path:
        return self.state_dir / "staging" / f"{instance}.{group}"

    def staging_ms(self, instance: str, group: str) -> Path:
        return self.staging_dir(instance, group) / f"{group}.ms"

    def prepare(self) -> None:
        """Create (and mark) the state directory and its subdirectories, which must be real
        directories (a symlink there would send stamps, locks or staging elsewhere)."""
        make_owned_dir(self.state_dir, STATE_KIND)
        for sub in ("published", "locks", "staging"):
            path = self.state_dir / sub
            with contextlib.suppress(FileExistsError):
                path.mkdir(mode=0o700)
            if path.is_symlink() or not path.is_dir():
                raise OutputError(f"{path}: is not a directory of this workflow (a symlink?)")

    def write_published_stamp(self, group: str) -> None:
        """The group's published stamp (the rule's declared output): a copy of the stamp inside
        its published MS."""
        self.prepare()
        write_text_atomically(self.stamp(group), (self.final_ms(group) / STAMP_NAME).read_text())

    def remove(self, path: Path) -> bool:
        """Remove an entry of the state directory (:func:`dsa110ms.owned.remove_owned`)."""
        return remove_owned(path, self.output_dir)

    def new_staging(self, instance: str, group: str) -> Path:
        """A clean staging directory for one attempt (what an earlier attempt left is removed);
        returns the path the MS is to be written at."""
        self.prepare()
        if self.remove(self.staging_dir(instance, group)):
            log.info("removed the staging MS of an earlier attempt of group %s", group)
        self.staging_dir(instance, group).mkdir(mode=0o700)
        return self.staging_ms(instance, group)

    def remove_staging(self, instance: str, group: str) -> None:
        """Remove this instance's staging of ``group`` (the caller holds the group's lock)."""
        self.remove(self.staging_dir(instance, group))

    def remove_stale_staging(self) -> list[Path]:
        """Remove staging left by joins that died (any run's, killed or crashed): a staging
        directory ``<instance>.<group>`` whose group's lock is free has no join writing it."""
        staging = self.state_dir / "staging"
        removed = []
        for path in sorted(staging.iterdir()) if staging.is_dir() else []:
            group = path.name.rpartition(".")[2]  # instance names may hold dots, ids do not
            with self.group_lock(group, timeout_s=0.0) as held:
                if held:
                    self.remove(path)
                    removed.append(path)
        return removed

    def check_stamps(self, groups, options: Mapping) -> list[str]:
        """Make every group's published stamp tell the truth about its MS (run by the main
        process when the Snakefile is read, before Snakemake looks at outputs): written for an
        intact published MS that has none (e.g. a run killed between publishing and writing it),
        removed where the MS is gone, damaged or not ours, so that the group is converted again.
        Returns one line per group whose stamp was removed, with the reason, and per intact MS
        made with other ``options`` (:func:`ms_options`) than this run's: it is kept."""
        notes = []
        for group in groups:
            final, stamp = self.final_ms(group), self.stamp(group)
            problem = damage(final, group) if os.path.lexists(final) else "missing"
            if problem is None:
                made_with = json.loads((final / STAMP_NAME).read_text()).get("options", options)
                if made_with != dict(options):
                    differ = sorted(k for k in options if made_with.get(k) != options[k])
                    notes.append(
                        f"{final}: made with other options ({', '.join(differ)}); kept - move it "
                        "away to convert the group again with this run's"
                    )
                if not stamp.exists():
                    self.write_published_stamp(group)
            elif os.path.lexists(stamp):
                self.remove(stamp)
                notes.append(f"{final}: {problem}; group {group} will be converted again")
            elif problem != "missing":
                notes.append(f"{final}: {problem}; group {group} will be converted again")
        return notes

    @contextmanager
    def group_lock(self, group: str, timeout_s: float = GROUP_LOCK_TIMEOUT_S):
        """Hold the group's lock (flock) while joining and publishing it: two runs never join
        the same group into one output directory at once; the second waits, then finds the
        group published. Released by the kernel if the holder dies. ``timeout_s=0``: do not
        wait; yields whether the lock was taken."""
        self.prepare()
        fd = open_own_file(self.lock(group))
        try:
            deadline, said = time.monotonic() + timeout_s, False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not timeout_s:
                        yield False
                        return
                    if not said:
                        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                        log.warning(
                            "group %s: another run is joining it (%s); waiting", group, holder
                        )
                        said = True
                    if time.monotonic() > deadline:
                        raise OutputError(
                            f"{self.lock(group)}: held by another run for over {timeout_s:.0f} s"
                        ) from None
                    time.sleep(0.2)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
            yield True
        finally:
            os.close(fd)


def _table_files(ms: Path) -> dict[str, int]:
    """What the integrity check compares: every table of the MS (directories holding a
    ``table.dat``: the main table and its subtables) and the size of each of their column data
    files (``table.f*``). Not ``table.dat`` or ``table.lock``, and new files are allowed:
    calibrating in place (flags, added columns) changes those, and must not make an MS look
    damaged."""
    files = {}
    for dirpath, _, names in os.walk(ms):
        if "table.dat" in names:
            rel = os.path.relpath(dirpath, ms)
            files[f"{rel}/table.dat"] = 0
            for name in names:
                if name.startswith("table.f"):
                    files[f"{rel}/{name}"] = os.lstat(os.path.join(dirpath, name)).st_size
    return files


def is_published(ms: str | os.PathLike) -> bool:
    """The MS carries our stamp (it was validated and published by this workflow)."""
    return (Path(ms) / STAMP_NAME).is_file()


def damage(ms: str | os.PathLike, group: str) -> str | None:
    """Why the MS at ``group``'s final path cannot be trusted (None if it is an intact
    published MS of that group): not published by this workflow (no stamp), published for
    another group (copied over), or a table or a column file it was published with is missing
    or shorter (e.g. a subtable deleted, a copy cut off). Cheap: stats only."""
    ms = Path(ms)
    if ms.is_symlink() or not ms.is_dir():
        return "not a directory"
    try:
        stamp = json.loads((ms / STAMP_NAME).read_text())
    except FileNotFoundError:
        return f"not published by this workflow (no {STAMP_NAME})"
    except (OSError, ValueError) as exc:
        return f"its {STAMP_NAME} cannot be read ({exc})"
    if stamp.get("group", group) != group:
        return f"it holds group {stamp['group']}, not {group} (copied over?)"
    for rel, size in stamp.get("files", {}).items():
        try:
            got = os.lstat(ms / rel).st_size
        except OSError:
            return f"{rel} is missing (it was published with it)"
        if got < size:
            return f"{rel} is {got} bytes, shorter than the {size} it was published with"
    return None


def write_stamp(ms: Path, group: str, summary: MsSummary, options: Mapping) -> None:
    """The stamp inside a validated MS: its group, what was validated, the options it was made
    with, and every table and column file with its size (:func:`damage`)."""
    stamp = {
        "group": group,
        "options": dict(options),
        "rows": summary.nrows,
        "spws": summary.n_spws,
        "channels": int(sum(len(f) for f in summary.spw_freqs)),
        "fields": len(summary.field_names),
        "time_range_mjd_s": [summary.time_min, summary.time_max],
        "validated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": _table_files(ms),
    }
    (ms / STAMP_NAME).write_text(json.dumps(stamp, indent=1))


def set_aside(final: Path, why: str) -> Path:
    """Rename an untrusted MS at a final path out of the way (kept for inspection, never
    removed: it may be someone's work)."""
    aside = final.with_name(f"{final.name}.invalid-{time.strftime('%Y%m%dT%H%M%S')}")
    os.rename(final, aside)
    log.warning("%s: %s; moved to %s", final, why, aside)
    return aside


def publish(
    area: OutputArea, staging: Path, group: str, summary: MsSummary, options: Mapping
) -> bool:
    """Make a validated MS visible at its final path in one rename and write its published
    stamp; the caller holds the group's lock. Returns False if an intact published MS is there
    already (kept; ours is dropped by the caller). An MS at the final path that this workflow did
    not publish, or that is damaged, is set aside first: the final path holds nothing or a
    complete validated MS at every instant."""
    final = area.final_ms(group)
    if os.path.lexists(final):
        problem = damage(final, group)
        if problem is None:
            log.info("%s: already published and intact; kept", final)
            return False
        set_aside(final, problem)
    write_stamp(staging, group, summary, options)
    os.rename(staging, final)
    area.write_published_stamp(group)
    log.info("published %s", final)
    return True
