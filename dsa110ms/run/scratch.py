"""Scratch space on tmpfs: layout, ownership locks and the stale sweep.

Layout (every path is a function of the configuration and the working directory, so it is the
same in every process of a run and in the next run from the same working directory)::

    <scratch_root>/                       mode 0700
      <instance>/                         one per working directory: "<dirname>-<hash>", 0700
        .owner.lock                       flock held by the live Snakemake main process
        <group>/template.ms               the group's template MS (what its subbands share)
        <group>/<time>_sbNN.part          MS parts of one group, named after their input files

Ownership: the main Snakemake process of a run holds an exclusive ``flock`` on its instance's
``.owner.lock`` for its whole life. The kernel drops the lock when the process dies, however it
dies (even SIGKILL), so "lock can be taken" means "no live owner", whatever the age of the files.
The stale sweep removes only instance directories whose lock it can take, and removes them while
holding that lock.

On a cluster node the run's main process is elsewhere, so each cluster job (one timestamp group)
owns its groups on the node instead: the Snakemake process running the job holds a flock on
``<instance>/.cluster-job-<id>.lock`` for its whole life, its template and part jobs mark their
group directory with ``.cluster-job-<id>``, and when it exits it removes its groups (see
:class:`dsa110ms.run.node.NodeJob`). One killed outright is cleaned by the next cluster job of
the instance on that node, whose lock it can then take.

Instance directories are created by :func:`dsa110ms.owned.make_owned_dir` (marked as ours); the
scratch root itself is used as it is (it may be ``/dev/shm``). Every removal goes through
:func:`dsa110ms.owned.remove_owned`, and the stale sweep considers only marked instance
directories: anything else under the root is never touched.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dsa110ms.errors import ScratchError
from dsa110ms.inventory import DataShape
from dsa110ms.owned import (
    MARKER,
    is_owned,
    make_owned_dir,
    open_own_file,
    owned_kind,
    remove_owned,
)
from dsa110ms.space import free_bytes, part_bytes, shape_of, template_bytes

log = logging.getLogger(__name__)

LOCK_NAME = ".owner.lock"
#: An instance directory without a lock file is only swept once it is this old: its creator may
#: be between mkdir and creating the lock.
UNLOCKED_GRACE_S = 300.0
#: The marker kind of instance directories: the only entries of the root the sweep considers
#: (``output_dir`` may be the same directory, with its own marked state directory in it).
INSTANCE_KIND = "scratch of one working directory"


def instance_name(workdir: str | os.PathLike) -> str:
    """Readable, unique name of a working directory: ``<dirname>-<10 hex of its path hash>``."""
    path = Path(workdir).resolve()
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", path.name)[:40] or "root"
    return f"{label}-{hashlib.sha256(str(path).encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class ScratchLayout:
    """Where the scratch of one working directory lives. ``variant``: the digest of the settings
    that shape what a run writes there (:func:`settings_variant`), in the names of its parts,
    templates and phase plans."""

    root: Path
    instance: str
    variant: str = ""

    @classmethod
    def for_workdir(
        cls, root: str | os.PathLike, workdir: str | os.PathLike, variant: str = ""
    ) -> ScratchLayout:
        return cls(Path(os.path.abspath(root)), instance_name(workdir), variant)

    @property
    def instance_dir(self) -> Path:
        return self.root / self.instance

    @property
    def lock_path(self) -> Path:
        return self.instance_dir / LOCK_NAME

    def group_dir(self, group: str) -> Path:
        return self.instance_dir / group

    def _entry(self, group: str, stem: str, suffix: str) -> Path:
        variant = f".{self.variant}" if self.variant else ""
        return self.group_dir(group) / f"{stem}{variant}{suffix}"

    def part(self, group: str, source_stem: str) -> Path:
        """Path of a part, named after its input file (``<time>_sbNN``, or wildcards)."""
        return self._entry(group, source_stem, ".part")

    def template(self, group: str) -> Path:
        return self._entry(group, "template", ".ms")

    def phase_plan(self, group: str) -> Path:
        """The group's phase plan (:mod:`dsa110ms.phasecenter`), for a one-FIELD MS."""
        return self._entry(group, "phase_plan", ".npz")


#: The settings that shape what a run writes to scratch (parts, templates, phase plans). Their
#: digest is in those entries' names, so that a run never reuses what a run killed with other
#: values left there: Snakemake would take such a part or template as up to date, and the MS
#: would be made with the killed run's settings under this run's stamp.
SCRATCH_SETTINGS = (
    "telescope",
    "generic_phasing",
    "keep_autocorrelations",
    "ms_telescope_name",
    "phase_center",
    "phase_center_ra_deg",
    "phase_center_dec_deg",
)


def settings_variant(settings) -> str:
    """8 hex digits of :data:`SCRATCH_SETTINGS`' values (numbers as floats: 180 and 180.0
    alike)."""
    values = {}
    for key in SCRATCH_SETTINGS:
        value = getattr(settings, key)
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        values[key] = float(value) if is_number else value
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]


def check_root(root: Path, *, create: bool = True) -> None:
    """The scratch root is used as it is (it may be ``/dev/shm`` or ``/tmp``, shared with other
    users): created (mode 0700) only if missing and ``create``, never chmod-ed; it must be a
    real directory this user can create entries in."""
    try:
        if create:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = root.lstat()
    except FileNotFoundError:
        return  # create=False: made when the run starts
    except OSError as exc:
        raise ScratchError(f"scratch_root {root}: cannot create it: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ScratchError(
            f"scratch_root {root}: is a symlink or not a directory; give the real directory"
        )
    if not os.access(root, os.W_OK | os.X_OK):
        raise ScratchError(f"scratch_root {root}: this user cannot create entries in it")
    # Whoever owns the root can rename our entries in it; in a sticky root (/dev/shm, /tmp)
    # nobody else can. So: a root of this user, or a sticky one of root's.
    sticky_system = st.st_uid == 0 and st.st_mode & stat.S_ISVTX
    if st.st_uid != os.getuid() and not sticky_system:
        raise ScratchError(
            f"scratch_root {root}: owned by uid {st.st_uid}, who could replace this workflow's "
            "entries in it; use a directory of yours, or a sticky system one such as /dev/shm"
        )


def make_instance_dir(layout: ScratchLayout) -> Path:
    """The instance directory (mode 0700, marked as ours) under a checked root."""
    check_root(layout.root)
    return make_owned_dir(layout.instance_dir, INSTANCE_KIND)


def make_group_dir(path: Path) -> None:
    """A group's directory inside its (ours, marked) instance directory, mode 0700."""
    if not is_owned(path.parent):
        raise ScratchError(f"{path.parent}: scratch instance directory missing or not ours")
    try:
        path.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ScratchError(f"{path}: cannot create scratch directory: {exc.strerror}") from None
    if path.is_symlink() or not path.is_dir():
        raise ScratchError(f"{path}: exists and is not a directory (symlinks are refused)")


class OwnerLock:
    """An exclusive flock on an instance's ``.owner.lock``; released by :meth:`release` or death."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd

    @classmethod
    def try_acquire(cls, path: Path, *, create: bool) -> OwnerLock | None:
        """Take the lock without waiting; None if a live process holds it or (create=False) the
        file does not exist. The returned lock is on the file that ``path`` names now: a sweep
        that unlinked it between open and flock is detected and the attempt repeated."""
        for _ in range(10):
            try:
                fd = open_own_file(path, create=create)
            except FileNotFoundError:
                if not create:
                    return None
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            try:
                same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return cls(path, fd)
            os.close(fd)  # the file was swept under us: try again on the new one
            if not create:
                return None
        raise ScratchError(f"{path}: lock file keeps being replaced; is another sweep looping?")

    def describe_owner(self) -> None:
        """Record who holds the lock, for people looking at scratch."""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)

    @property
    def held(self) -> bool:
        return self.fd >= 0

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def lock_holder(path: Path) -> str:
    """Who holds the lock file at ``path``, as its holder wrote it (``pid N on HOST``)."""
    try:
        return path.read_text().strip() or "unknown process"
    except OSError:
        return "unknown process"


def acquire_instance(layout: ScratchLayout) -> OwnerLock:
    """Create the instance directory (0700) and take its owner lock, or fail naming the holder."""
    make_instance_dir(layout)
    lock = OwnerLock.try_acquire(layout.lock_path, create=True)
    if lock is None:
        raise ScratchError(
            f"{layout.instance_dir}: scratch is in use by a live run "
            f"({lock_holder(layout.lock_path)}); "
            "wait for it or run from another working directory"
        )
    lock.describe_owner()
    return lock


JOB_LOCK_PREFIX = ".cluster-job-"


@dataclass
class SweepReport:
    removed: list[str]
    live: list[str]
    failed: list[str]  # "path: reason"


def _is_held(lock_path: Path) -> bool:
    """True if a live process holds the lock at ``lock_path``."""
    lock = OwnerLock.try_acquire(lock_path, create=False)
    if lock is None:
        return lock_path.exists()
    lock.release()
    return False


def sweep_stale(root: str | os.PathLike, *, keep: str | None = None) -> SweepReport:
    """Remove instance directories under ``root`` whose owner is dead (lock free).

    Only directories this workflow created are considered (marked, :mod:`dsa110ms.owned`):
    anything else under the root - other programs' files, other users' directories - is never
    looked into. ``keep`` is the caller's own instance (whose lock it holds). A directory is live
    while any of its locks is held: the run's owner lock or a cluster job's
    (:class:`dsa110ms.run.node.NodeJob`).
    Marked directories without any lock file (their creator is between writing the marker and
    taking the lock) are removed only when older than :data:`UNLOCKED_GRACE_S`.
    """
    root = Path(root)
    report = SweepReport([], [], [])
    if root.is_symlink() or not root.is_dir():
        return report
    for entry in sorted(root.iterdir()):
        if entry.name == keep or owned_kind(entry) != INSTANCE_KIND:
            continue
        job_locks = list(entry.glob(f"{JOB_LOCK_PREFIX}*.lock"))
        if any(_is_held(path) for path in job_locks):
            report.live.append(str(entry))  # a cluster job is running in it on this node
            continue
        lock = OwnerLock.try_acquire(entry / LOCK_NAME, create=False)
        if lock is None:
            if (entry / LOCK_NAME).exists():
                report.live.append(str(entry))
                continue
            age = time.time() - entry.lstat().st_mtime
            if not job_locks and age < UNLOCKED_GRACE_S:
                report.live.append(str(entry))
                continue
        try:
            remove_owned(entry, root)
            report.removed.append(str(entry))
        except ScratchError as exc:
            report.failed.append(str(exc))
        finally:
            if lock is not None:
                lock.release()
    for path in report.removed:
        log.info("removed stale scratch %s (its run is no longer alive)", path)
    for reason in report.failed:
        log.warning("stale scratch not removed: %s", reason)
    return report


# --- admission by scratch space ------------------------------------------------------------
#
# A group's template and parts stay on scratch from its first job until its concat ends, but a
# Snakemake resource is held only while a job runs. So every job of a group (template, parts,
# concat) asks for the scratch of a whole group (the largest of the run's, the same for all),
# against a limit of the free space at the start of the run, and every job of an earlier group
# outranks every job of a later one (priority): a later group's first job starts only when no
# job of an open group is waiting, so open groups never need more than the limit, and a
# backlog larger than scratch converts one group after another.

#: Snakemake resource of the template, part and concat jobs (MB of scratch; one group's).
SCRATCH_RESOURCE = "scratch_mb"
#: Of the free space at the start of the run, what the groups may take (the rest: other users).
USABLE_FRACTION = 0.95


def group_scratch_bytes(
    input_files: list[str],
    template_source: str,
    *,
    join_method: str = "direct",
    shapes: Callable[[str], DataShape | None] = shape_of,
) -> int:
    """Bytes of scratch a group takes at most: its template and a part per input file (with
    ``join_method: concat`` the join copies the parts once more on scratch). ``shapes``: a
    file's data shape (the inventory's, in the main process)."""
    parts = sum(part_bytes(f, shapes(f)) for f in input_files)
    if join_method == "concat":
        parts *= 2
    return parts + template_bytes(template_source, shapes(template_source))


def scratch_limit_mb(root: str | os.PathLike) -> int:
    """The run's limit of the scratch resource: the usable part of the free space now (MB)."""
    return max(int(free_bytes(root) * USABLE_FRACTION / 1e6), 1)


def left_by_earlier_run(layout: ScratchLayout) -> list[str]:
    """What an instance's scratch holds besides its marker and owner lock (relative paths): at
    the start of a run, what an earlier run of the working directory left."""
    return [e for e in remaining_entries(layout.instance_dir) if e not in (MARKER, LOCK_NAME)]


def remaining_entries(path: str | os.PathLike) -> list[str]:
    """Everything still under ``path`` (for the end-of-run check), as relative paths."""
    path = Path(path)
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
