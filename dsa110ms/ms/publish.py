"""Validation of a joined Measurement Set and its atomic publication.

A joined MS is checked against what its parts promise before anyone can see it:

- it opens with CASA's ``ms`` and ``msmetadata`` tools, and every subtable the main table refers
  to exists and opens;
- rows: the sum of the parts' (one SPW per part), or each part's (single SPW);
- SPW frequencies are the parts' (one SPW per part, or all channels in one SPW), channels
  ascending within and across SPWs and, for a complete group, one contiguous grid;
- the FIELD table holds the parts' fields once (the 16 subbands share their fields, one per
  integration in DSA-110 mode: each part's fields are checked when it is summarized);
- the TIME range equals the parts' TIME range;
- UVW are finite and no longer than the array's longest baseline.

Only then is it stamped (``dsa110ms_published.json`` inside it: what was validated, and the size
of every column file, for a cheap integrity check) and renamed, in one ``rename(2)``, from its
staging path to ``<output_dir>/<group>.ms``; then its published stamp, the rule's declared output,
is written (:class:`OutputArea`). Existing outputs: an intact stamped MS is trusted and kept;
anything else at a final path (a partial copy, another tool's output, a published MS that lost a
table) is set aside as ``<group>.ms.invalid-<time>`` and converted again. Nothing at a final path
is ever deleted.
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

import numpy as np

from dsa110ms import casa
from dsa110ms.errors import OutputError, ValidationError
from dsa110ms.files import write_text_atomically
from dsa110ms.owned import make_owned_dir, open_own_file, remove_owned

log = logging.getLogger(__name__)

#: Frequencies are compared to this precision (Hz); the channel grid is exact in binary.
FREQ_TOLERANCE_HZ = 1e-3


@dataclass(frozen=True)
class MsSummary:
    """What validation needs to know about an MS (part or joined). Frequencies in Hz, TIME in s."""

    path: str
    nrows: int
    spw_freqs: tuple[np.ndarray, ...]  # CHAN_FREQ of each SPW, in SPW order
    field_names: tuple[str, ...]
    time_min: float
    time_max: float
    n_times: int

    @property
    def n_spws(self) -> int:
        return len(self.spw_freqs)


def summarize(ms_path: str | os.PathLike) -> MsSummary:
    """Read the summary of an MS (python-casacore: the join already has it loaded)."""
    from casacore import tables

    path = str(ms_path)
    try:
        with tables.table(path, ack=False) as tb:
            nrows = tb.nrows()
            times = tb.getcol("TIME") if nrows else np.zeros(1)
        with tables.table(f"{path}/SPECTRAL_WINDOW", ack=False) as tb:
            freqs = tuple(
                np.asarray(tb.getcell("CHAN_FREQ", i), dtype=float) for i in range(tb.nrows())
            )
        with tables.table(f"{path}/FIELD", ack=False) as tb:
            names = tuple(str(n) for n in tb.getcol("NAME")) if tb.nrows() else ()
    except RuntimeError as exc:
        raise ValidationError(f"{path}: cannot be read as a Measurement Set: {exc}") from exc
    return MsSummary(
        path, nrows, freqs, names, float(times.min()), float(times.max()), len(np.unique(times))
    )


def check_opens(ms_path: str) -> None:
    """Every referenced subtable exists and opens; CASA's ms and msmetadata tools open it."""
    from casacore import tables

    try:
        with tables.table(ms_path, ack=False) as tb:
            keywords = tb.getkeywords()
        for name, value in keywords.items():
            if isinstance(value, str) and value.startswith("Table: "):
                sub = value.removeprefix("Table: ")
                if not os.path.isdir(sub):
                    raise ValidationError(f"{ms_path}: subtable {name} missing ({sub})")
                with tables.table(sub, ack=False):
                    pass
        tools = casa.tools()
        ms = tools.ms()
        ms.open(ms_path)
        ms.close()
        msmd = tools.msmetadata()
        msmd.open(ms_path)
        msmd.nspw()
        msmd.done()
    except RuntimeError as exc:
        raise ValidationError(f"{ms_path}: CASA cannot open it: {exc}") from exc


def check_frequencies(
    spw_freqs: tuple[np.ndarray, ...], where: str, *, contiguous: bool = True
) -> None:
    """Channels ascend within and across SPWs (in SPW order); with ``contiguous``, they are one
    evenly spaced grid without gaps (a group converted without some subbands under
    incomplete_groups=convert has gaps)."""
    for i, f in enumerate(spw_freqs):
        if len(f) > 1 and not np.all(np.diff(f) > 0):
            raise ValidationError(f"{where}: SPW {i} channels are not in ascending frequency")
        if i and f[0] <= spw_freqs[i - 1][-1]:
            raise ValidationError(
                f"{where}: SPW {i} starts at {f[0]:.3f} Hz, not above SPW {i - 1} "
                f"(ends {spw_freqs[i - 1][-1]:.3f} Hz): SPWs must ascend"
            )
    steps = np.diff(np.concatenate(spw_freqs))
    if contiguous and len(steps) and np.ptp(steps) > FREQ_TOLERANCE_HZ:
        k = int(np.argmax(np.abs(steps - steps[0])))
        raise ValidationError(
            f"{where}: channels are not contiguous (step {steps[k]:.3f} Hz after "
            f"{np.concatenate(spw_freqs)[k]:.3f} Hz, channel spacing {steps[0]:.3f} Hz)"
        )


def check_uvw(ms_path: str, where: str) -> None:
    """UVW finite and no longer than the longest baseline of the array (plus 1 m)."""
    from casacore import tables

    with tables.table(ms_path, ack=False) as tb:
        uvw = tb.getcol("UVW")  # (nrow, 3)
    with tables.table(f"{ms_path}/ANTENNA", ack=False) as tb:
        pos = tb.getcol("POSITION")  # (nant, 3)
    if not np.all(np.isfinite(uvw)):
        raise ValidationError(f"{where}: UVW has non-finite values")
    longest = max(np.linalg.norm(pos - p, axis=1).max() for p in pos)
    got = np.linalg.norm(uvw, axis=1).max() if uvw.size else 0.0
    if got > longest + 1.0:
        raise ValidationError(
            f"{where}: |UVW| up to {got:.1f} m, longer than the longest baseline ({longest:.1f} m)"
        )


def validate_joined(
    joined: str | os.PathLike,
    parts: list[MsSummary],
    group: str,
    *,
    contiguous: bool = True,
    spw_layout: str = "per_subband",
    field_per_integration: bool = False,
) -> MsSummary:
    """Check a joined MS against its parts (in SPW order); raises ValidationError naming group.

    ``contiguous``: the parts cover the band without gaps (the group is complete).
    ``spw_layout``: "per_subband" (one SPW per part, rows add up) or "single" (one SPW with all
    channels, rows as in each part). ``field_per_integration`` (DSA-110 mode): one FIELD per
    integration time."""
    where = f"group {group} ({joined})"
    check_opens(str(joined))
    got = summarize(joined)
    if spw_layout == "single":
        want_rows = parts[0].nrows
        want_freqs = (np.concatenate([p.spw_freqs[0] for p in parts]),)
    else:
        want_rows = sum(p.nrows for p in parts)
        want_freqs = tuple(p.spw_freqs[0] for p in parts)
    if got.nrows != want_rows:
        raise ValidationError(f"{where}: {got.nrows} rows, the parts make {want_rows}")
    if got.n_spws != len(want_freqs):
        raise ValidationError(f"{where}: {got.n_spws} SPWs, expected {len(want_freqs)}")
    for i, (f, want) in enumerate(zip(got.spw_freqs, want_freqs, strict=True)):
        if len(f) != len(want) or np.abs(f - want).max() > FREQ_TOLERANCE_HZ:
            raise ValidationError(f"{where}: SPW {i} frequencies differ from the parts'")
    check_frequencies(got.spw_freqs, where, contiguous=contiguous)
    want_fields = sorted(set().union(*(p.field_names for p in parts)))
    if sorted(got.field_names) != want_fields:
        raise ValidationError(
            f"{where}: fields {sorted(got.field_names)} differ from the parts' {want_fields}"
        )
    if field_per_integration and len(got.field_names) != got.n_times:
        raise ValidationError(
            f"{where}: {len(got.field_names)} fields for {got.n_times} integrations; "
            "expected one meridian field per integration"
        )
    t_lo, t_hi = min(p.time_min for p in parts), max(p.time_max for p in parts)
    if (got.time_min, got.time_max) != (t_lo, t_hi):
        raise ValidationError(
            f"{where}: TIME range {got.time_min}-{got.time_max} s differs from the parts' "
            f"{t_lo}-{t_hi} s"
        )
    check_uvw(str(joined), where)
    return got


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


def ms_options(settings: Mapping) -> dict:
    return {k: settings[k] for k in MS_OPTIONS}


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
        made with other ``options`` (:class:`dsa110ms.ms.join.JoinOptions`) than this run's: it is
        kept."""
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
                    self.prepare()
                    write_text_atomically(stamp, (final / STAMP_NAME).read_text())
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
    write_text_atomically(area.stamp(group), (final / STAMP_NAME).read_text())
    log.info("published %s", final)
    return True
