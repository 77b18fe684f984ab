"""Publication: the output directory's state, and a validated MS made visible in one rename.

A validated MS (:mod:`dsa110ms.ms.validate`) is stamped (``dsa110ms_published.json`` inside it:
its group, the options it was made with, what was validated, and the size of every column file,
for a cheap integrity check) and renamed, in one ``rename(2)``, from its staging path to
``<output_dir>/<group>.ms``; then its published stamp, the rule's declared output, is written
(:class:`OutputArea`). Existing outputs: an intact stamped MS is trusted and kept; anything else
at a final path (a partial copy, another tool's output, a published MS that lost a table) is set
aside as ``<group>.ms.invalid-<time>`` and converted again. Nothing at a final path is ever
deleted.

Changed inputs: the stamp records the identity (name, size, modification time) of every input
file the MS was made from. A group whose files differ now (a subband re-sent, arrived late, or
gone) has *changed inputs* (:func:`input_changes`): by default its MS is kept, the group is not
converted, and every run says so (:meth:`OutputArea.check_stamps`); with ``changed_inputs:
reconvert`` the group is converted again and the new MS takes the old one's place in one step
(:func:`replace_published`), the old one set aside as ``<group>.ms.replaced-<time>``.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import datetime as dt
import errno
import fcntl
import functools
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dsa110ms.errors import OutputError
from dsa110ms.files import input_identity, write_text_atomically
from dsa110ms.groups import (
    FILE_PATTERN,
    MAX_TOLERANCE_S,
    TIMESTAMP_PATTERN,
    jd_from_datetime,
    parse_timestamp,
)
from dsa110ms.manifest import Group
from dsa110ms.ms.validate import MsSummary
from dsa110ms.owned import make_owned_dir, open_own_file, remove_owned
from dsa110ms.phasecenter import PhaseCenter
from dsa110ms.settings import Settings
from dsa110ms.timetables import JD_MINUS_MJD

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
    else:
        options["ms_telescope_name"] = settings.ms_telescope_name
    # recorded when not the default: the MSs of earlier versions are per_integration
    if settings.phase_center != "per_integration":
        options["phase_center"] = PhaseCenter.of(settings).recorded()
    return options


#: The config key, and the value of it, that converts a group with changed inputs again.
RECONVERT_SETTING = "changed_inputs: reconvert"


def changed_note(changed: ChangedInputs, *, reconvert: bool) -> str:
    """The one line that says a group's inputs changed since its MS was published, and what
    this run does about it."""
    head = f"group {changed.group}: input files changed since {changed.ms} was published "
    head += f"({changed.published_utc}): {changed.what}"
    if reconvert:
        return f"{head}; converting it again ({RECONVERT_SETTING}: the old MS is set aside)"
    if not changed.recorded:
        return (
            f"{head}; MS kept, not converted again - move it out of output_dir to convert the "
            "group again"
        )
    if changed.only_removed:
        return (
            f"{head}; MS kept, not converted again (it would hold less: files were only "
            "removed) - restore the files, or move the MS out of output_dir to convert what is left"
        )
    return (
        f"{head}; MS kept, not converted again - set {RECONVERT_SETTING} to convert it again "
        "(the old MS is set aside, never deleted), or restore the files"
    )


@dataclass
class StampCheck:
    """What :meth:`OutputArea.check_stamps` found."""

    #: one warning line each
    notes: list[str] = field(default_factory=list)
    #: group -> its published MS's changed inputs
    changed: dict[str, ChangedInputs] = field(default_factory=dict)
    #: groups whose MS's stamp predates the record of inputs (changes cannot be detected)
    unrecorded: list[str] = field(default_factory=list)
    #: group -> its MS published by an earlier version under its file-name id (kept)
    legacy: dict[str, Path] = field(default_factory=dict)
    #: group -> how the options its intact MS was made with differ from this run's (kept)
    other_options: dict[str, str] = field(default_factory=dict)


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

    def staging_dirs(self) -> list[Path]:
        """Every staging directory (``<instance>.<group>``), of any run."""
        staging = self.state_dir / "staging"
        return sorted(staging.iterdir()) if staging.is_dir() else []

    def remove_stale_staging(self) -> list[Path]:
        """Remove staging left by joins that died (any run's, killed or crashed): a staging
        directory ``<instance>.<group>`` whose group's lock is free has no join writing it."""
        removed = []
        for path in self.staging_dirs():
            group = path.name.rpartition(".")[2]  # instance names may hold dots, ids do not
            with self.group_lock(group, timeout_s=0.0) as held:
                if held:
                    self.remove(path)
                    removed.append(path)
        return removed

    def remove_instance_staging(self, instance: str) -> list[Path]:
        """Remove (verified) every staging directory of ``instance``: at the end of its run, when
        no join of it is running (one stopped by a signal removes its own: this checks it).
        Returns those that were still there."""
        left = [p for p in self.staging_dirs() if p.name.startswith(f"{instance}.")]
        for path in left:
            self.remove(path)
        return left

    def check_stamps(
        self, groups: Iterable[Group], options: Mapping, *, reconvert_changed: bool = False
    ) -> StampCheck:
        """Make every group's published stamp tell the truth about its MS (run by the main
        process when the Snakefile is read, before Snakemake looks at outputs): written for an
        intact published MS that has none (e.g. a run killed between publishing and writing it),
        removed where the MS is gone, damaged or not ours, so that the group is converted again.

        An intact MS whose group's files differ from those it was made from (:func:`input_changes`)
        is kept; its group is converted again only if ``reconvert_changed`` (its stamp removed:
        the join replaces the MS, :func:`publish`). Returns (:class:`StampCheck`) one line per
        group whose stamp was removed, with the reason, per intact MS made with other ``options``
        (:func:`ms_options`) than this run's (kept), and per MS with changed inputs; those
        groups; and the MSs whose stamp does not record their inputs."""
        check = StampCheck()
        check.notes += [
            f"{path}: left by a replacement that was interrupted (a complete MS: the new or the "
            "previous one of its group; the group's MS is in place); yours to inspect and delete"
            for path in self.interrupted_swaps()
        ]
        published_ms = functools.cache(self.published_ms_by_time)
        for group in groups:
            gid = group.id
            final, stamp = self.final_ms(gid), self.stamp(gid)
            problem = damage(final, gid) if os.path.lexists(final) else "missing"
            if problem is None:
                changed = self._check_intact(group, options, check)
                redo = changed is not None and reconvert_changed and changed.reconvertible
                if changed is not None:
                    check.notes.append(changed_note(changed, reconvert=redo))
                if redo:
                    self.remove(stamp)
                elif not stamp.exists():
                    self.write_published_stamp(gid)
            elif os.path.lexists(stamp):
                self.remove(stamp)
                check.notes.append(f"{final}: {problem}; group {gid} will be converted again")
            elif problem != "missing":
                check.notes.append(f"{final}: {problem}; group {gid} will be converted again")
            elif (legacy := self.legacy_ms(gid, published_ms)) is not None:
                check.legacy[gid] = legacy
                changed = unrecorded_changes(group, legacy, stamp_of(legacy))
                what = f": {changed.what}" if changed else ""
                if changed is not None:
                    check.changed[gid] = changed
                check.notes.append(
                    f"group {gid}: published as {legacy} by an earlier version (which named a "
                    f"group after its sb00 file){what}; kept, not converted again; move that MS "
                    "out of output_dir to convert the group under the time its data start"
                )
        return check

    def interrupted_swaps(self) -> list[Path]:
        """MSs left under a swapping name (:func:`replace_published`) by a process that died
        between its renames."""
        return sorted(self.output_dir.glob(f"*.ms.{SWAPPING}-*"))

    def published_ms_by_time(self) -> list[tuple[dt.datetime, Path]]:
        """Every ``<YYYY-MM-DDTHH:MM:SS>.ms`` in the output directory, by the time in its name
        (ascending); listed once per check."""
        found = []
        with os.scandir(self.output_dir) as entries:
            for entry in entries:
                stem = entry.name.removesuffix(".ms")
                if stem != entry.name and re.fullmatch(TIMESTAMP_PATTERN, stem):
                    with contextlib.suppress(ValueError):
                        found.append((parse_timestamp(stem), Path(entry.path)))
        return sorted(found)

    def legacy_ms(self, group: str, published_ms: Callable[[], list]) -> Path | None:
        """The group's MS as a version before 0.14 named and published it, if there: those
        named a group by its sb00 file's name (without sb00: its earliest file's), whatever
        names the files have now (sb00 may have arrived late, or been re-sent under another
        name). Found by its contents: an MS of ours named within :data:`MAX_TOLERANCE_S` of the
        group's id, its stamp for that name, recording no input files, its first integration
        (centre) at most that long after the group's data start. Converting the group again
        under its data's start would make one observation two MSs. ``published_ms``: returns
        :meth:`published_ms_by_time` (listed only when a group has no MS under its id)."""
        start = parse_timestamp(group)
        window = dt.timedelta(seconds=MAX_TOLERANCE_S)
        listing = published_ms()
        lo = bisect.bisect_left(listing, (start - window,))
        candidates = []
        for named, final in listing[lo:]:
            if named > start + window:
                break
            old_id = final.name.removesuffix(".ms")
            if old_id == group or damage(final, old_id):
                continue
            stamp = stamp_of(final)
            first_s = (stamp.get("time_range_mjd_s") or [None])[0]
            if stamp.get("group") != old_id or "inputs" in stamp or first_s is None:
                continue
            # the MS's TIME counts seconds from MJD 0
            after_start_s = first_s - (jd_from_datetime(start) - JD_MINUS_MJD) * 86400.0
            if -1.0 <= after_start_s <= MAX_TOLERANCE_S:
                candidates.append((abs(named - start), final))
        return min(candidates)[1] if candidates else None

    def _check_intact(
        self, group: Group, options: Mapping, check: StampCheck
    ) -> ChangedInputs | None:
        """For :meth:`check_stamps`, a group with an intact published MS: a note if the MS was
        made with other ``options``; its changed inputs, if any (also in ``check.changed``)."""
        final = self.final_ms(group.id)
        made = stamp_of(final)
        made_with = made.get("options", options)
        if made_with != dict(options):
            differ = sorted(k for k in {*options, *made_with} if made_with.get(k) != options.get(k))
            what = "; ".join(
                f"{k} {made_with.get(k, 'default')}, this run's {options.get(k, 'default')}"
                for k in differ
            )
            check.other_options[group.id] = what
            check.notes.append(
                f"{final}: made with other options ({what}); kept - move it away to convert the "
                "group again with this run's"
            )
        if "inputs" not in made:
            check.unrecorded.append(group.id)
            changed = unrecorded_changes(group, final, made)
            if changed is not None:
                check.changed[group.id] = changed
            return changed
        current = input_identities(group.files.values())
        changes = input_changes(made["inputs"], current)
        if not changes:
            return None
        changed = ChangedInputs(
            group.id,
            final,
            made.get("validated_utc", "?"),
            tuple(changes),
            only_removed=all(made["inputs"].get(k) == v for k, v in current.items()),
        )
        check.changed[group.id] = changed
        return changed

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


def input_key(path: str | os.PathLike) -> str:
    """A file's key in the recorded inputs: ``sbNN`` from its name (so that a subband whose
    file was replaced by one of another name is one change), else the name itself."""
    name = os.path.basename(path)
    m = FILE_PATTERN.match(name)
    return f"sb{m['subband']}" if m else name


def input_identities(paths: Iterable[str | os.PathLike]) -> dict[str, dict]:
    """:func:`input_identity` of each file that exists, by :func:`input_key` (a file that
    vanished is left out: it then reads as gone)."""
    identities = {}
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            identities[input_key(path)] = input_identity(path)
    return identities


def stamp_of(ms: str | os.PathLike) -> dict:
    """The stamp inside a published MS."""
    return json.loads((Path(ms) / STAMP_NAME).read_text())


def utc_ns(ns: int) -> str:
    """Nanoseconds since the Unix epoch as ``YYYY-MM-DD HH:MM:SS UTC``."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ns / 1e9))


def input_changes(recorded: Mapping[str, dict], current: Mapping[str, dict]) -> list[str]:
    """How the files a group has now (``current``) differ from those its MS was made from
    (``recorded``), both :func:`input_identities`: one phrase per subband that arrived, is
    gone, or changed (another file, size or modification time); empty if none did."""
    changes = []
    for key in sorted(set(recorded) | set(current)):
        was, now = recorded.get(key), current.get(key)
        if was == now:
            continue
        if was is None:
            changes.append(f"{key} {now['file']} arrived after publication")
        elif now is None:
            changes.append(f"{key} {was['file']} is gone")
        elif was["file"] != now["file"]:
            changes.append(f"{key} is now {now['file']} (was {was['file']})")
        elif was["size"] != now["size"]:
            changes.append(
                f"{key} {now['file']} changed: {was['size']} -> {now['size']} bytes, "
                f"modified {utc_ns(now['mtime_ns'])}"
            )
        else:
            changes.append(f"{key} {now['file']} rewritten: modified {utc_ns(now['mtime_ns'])}")
    return changes


def unrecorded_changes(group: Group, ms: Path, stamp: Mapping) -> ChangedInputs | None:
    """What can be told of a group whose MS's stamp records no input files (an earlier
    version published it): with one SPW per subband, more files now than SPWs in the MS means
    files arrived after publication."""
    layout = stamp.get("options", {}).get("spw_layout", "per_subband")
    spws = stamp.get("spws")
    if layout != "per_subband" or not isinstance(spws, int) or len(group.files) <= spws:
        return None
    what = (
        f"the group has {len(group.files)} subband files, the MS {spws} SPWs (published by an "
        "earlier version, which recorded no input files: the others arrived after)"
    )
    return ChangedInputs(group.id, ms, stamp.get("validated_utc", "?"), (what,), recorded=False)


@dataclass(frozen=True)
class ChangedInputs:
    """A published MS whose group's input files differ from those it was made from."""

    group: str
    ms: Path
    #: when the MS was validated and published (UTC, from its stamp)
    published_utc: str
    #: :func:`input_changes`
    changes: tuple[str, ...]
    #: every change is a file gone (e.g. raw files purged after conversion): a reconversion
    #: would only make an MS with less in it, so ``changed_inputs: reconvert`` keeps it too
    only_removed: bool = False
    #: the MS's stamp records its input files (an earlier version's does not: it cannot be
    #: replaced by a reconversion, which must tell what it replaces)
    recorded: bool = True

    @property
    def reconvertible(self) -> bool:
        """Whether ``changed_inputs: reconvert`` converts the group again."""
        return self.recorded and not self.only_removed

    @property
    def what(self) -> str:
        """The changes in one line."""
        return "; ".join(self.changes)

    @property
    def kept_reason(self) -> str:
        """The run summary's reason for the MS kept as it is (``changed_inputs: report``)."""
        if not self.recorded:
            advice = "move it out of output_dir to convert the group again"
        elif self.only_removed:
            advice = "files only removed: it would hold less; restore them, or move the MS away"
        else:
            advice = f"{RECONVERT_SETTING} converts it, setting the old MS aside"
        return (
            f"inputs changed since published {self.published_utc}: {self.what}; MS kept, not "
            f"converted again ({advice})"
        )

    def reconverted_reason(self) -> str:
        """The run summary's reason for the group converted again: where the previous MS was
        set aside, as the new MS's stamp records it."""
        replaced = stamp_of(self.ms).get("replaced") or {}
        return (
            f"inputs changed since {replaced.get('published_utc', self.published_utc)}: "
            f"{self.what}; previous MS set aside at {replaced.get('ms', '?')}"
        )


def write_stamp(
    ms: Path,
    group: str,
    summary: MsSummary,
    options: Mapping,
    inputs: Mapping[str, dict] | None = None,
    replaced: Mapping | None = None,
) -> None:
    """The stamp inside a validated MS: its group, what was validated, the options it was made
    with, every table and column file with its size (:func:`damage`), the input files it was
    made from (:func:`input_identities`) and, if it replaced a published MS whose inputs had
    changed, where that one was set aside and why."""
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
    if inputs is not None:
        stamp["inputs"] = dict(inputs)
    if replaced is not None:
        stamp["replaced"] = dict(replaced)
    (ms / STAMP_NAME).write_text(json.dumps(stamp, indent=1))


def aside_path(final: Path, label: str) -> Path:
    """Where an MS at ``final`` is set aside: ``<group>.ms.<label>-<local time>``."""
    return final.with_name(f"{final.name}.{label}-{time.strftime('%Y%m%dT%H%M%S')}")


def set_aside(final: Path, why: str, aside: Path | None = None) -> Path:
    """Rename an untrusted MS at a final path out of the way (kept for inspection, never
    removed: it may be someone's work)."""
    aside = aside or aside_path(final, "invalid")
    os.rename(final, aside)
    log.warning("%s: %s; moved to %s", final, why, aside)
    return aside


#: renameat2(2)
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(a: Path, b: Path) -> None:
    """Swap two paths of one file system in one step (``renameat2(RENAME_EXCHANGE)``, Linux
    3.15+: ext4, XFS, Btrfs, tmpfs). OSError ``EINVAL``/``ENOSYS`` where it is not supported
    (e.g. NFS)."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # a C library older than glibc 2.28
        raise OSError(errno.ENOSYS, "renameat2 is not in this C library", str(a))
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE):
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a), None, str(b))


#: The label of the name a replacement passes through beside the final path
#: (``<group>.ms.swapping-<time>``): it holds the new MS until the swap, the old one after it.
SWAPPING = "swapping"


def replace_published(staging: Path, final: Path, aside: Path) -> None:
    """Put the validated MS at ``staging`` in the place of the published MS at ``final``, which
    goes to ``aside`` (same directory): the new MS is first renamed beside the old one
    (``<group>.ms.swapping-<time>``), the two are swapped in one step (:func:`exchange`), then
    the old one is renamed to ``aside``. The final path always holds a complete MS; if the
    process dies in between, the swapping name holds the other complete MS, never removed and
    reported by every later run (:meth:`OutputArea.interrupted_swaps`). Where the file system
    cannot swap, the old MS is renamed aside and the new one into place (two renames: for an
    instant the final path holds nothing)."""
    swapping = aside_path(final, SWAPPING)
    os.rename(staging, swapping)
    try:
        exchange(swapping, final)
    except OSError as exc:
        os.rename(swapping, staging)  # as it was: the caller removes its staging
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
        log.info("%s: cannot swap in one step (%s); two renames", final, exc.strerror)
        os.rename(final, aside)
        os.rename(staging, final)
        return
    os.rename(swapping, aside)


def is_current(final: Path, group: str, inputs: Mapping[str, dict] | None) -> bool:
    """An intact published MS of ``group`` is at ``final`` and was made from ``inputs`` (or one
    of them is unknown: a stamp older than the record of inputs, or a caller that has none).
    Otherwise a join of the group replaces what is there: an MS that is damaged or not ours is
    set aside as invalid, one made from other inputs is replaced (:func:`publish`). The main
    process asks for a join of a group whose inputs changed only under ``changed_inputs:
    reconvert`` (:meth:`OutputArea.check_stamps`)."""
    if not os.path.lexists(final) or damage(final, group) is not None:
        return False
    recorded = stamp_of(final).get("inputs")
    return recorded is None or inputs is None or not input_changes(recorded, inputs)


def publish(
    area: OutputArea,
    staging: Path,
    group: str,
    summary: MsSummary,
    options: Mapping,
    inputs: Mapping[str, dict] | None = None,
) -> bool:
    """Make a validated MS visible at its final path in one rename and write its published
    stamp; the caller holds the group's lock. ``inputs``: the input files it was made from
    (:func:`input_identities`), recorded in its stamp. Returns False if an intact published MS
    made from the same inputs is there already (kept; ours is dropped by the caller). An MS at
    the final path that this workflow did not publish, or that is damaged, is set aside first;
    one made from other inputs is replaced in one step and set aside
    (:func:`replace_published`): the final path holds nothing or a complete validated MS at
    every instant."""
    final = area.final_ms(group)
    if is_current(final, group, inputs):
        log.info("%s: already published and intact; kept", final)
        return False
    if os.path.lexists(final) and (problem := damage(final, group)) is not None:
        set_aside(final, problem)
    if os.path.lexists(final):  # intact, made from other inputs
        old = stamp_of(final)
        aside = aside_path(final, "replaced")
        changes = input_changes(old["inputs"], inputs)
        replaced = {"ms": str(aside), "published_utc": old.get("validated_utc"), "changes": changes}
        write_stamp(staging, group, summary, options, inputs, replaced)
        replace_published(staging, final, aside)
        log.warning(
            "%s: replaced (inputs changed since %s: %s); the previous MS is set aside at %s",
            final,
            replaced["published_utc"],
            "; ".join(changes),
            aside,
        )
    else:
        write_stamp(staging, group, summary, options, inputs)
        os.rename(staging, final)
    area.write_published_stamp(group)
    log.info("published %s", final)
    return True
