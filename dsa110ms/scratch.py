"""Scratch space on tmpfs: layout, ownership locks, verified removal and the stale sweep.

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
:class:`NodeJob`). One killed outright is cleaned by the next cluster job of the instance on that
node, whose lock it can then take.

Every removal of scratch goes through :func:`remove_tree`: it refuses paths outside the scratch
root, never follows symlinks, retries, and checks that the path is gone.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from . import faults, metrics
from .cluster import cluster_job_id
from .errors import ScratchError

log = logging.getLogger(__name__)

LOCK_NAME = ".owner.lock"
#: An instance directory without a lock file is only swept once it is this old: its creator may
#: be between mkdir and creating the lock.
UNLOCKED_GRACE_S = 300.0
REMOVE_ATTEMPTS = 3


def instance_name(workdir: str | os.PathLike) -> str:
    """Readable, unique name of a working directory: ``<dirname>-<10 hex of its path hash>``."""
    path = Path(workdir).resolve()
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", path.name)[:40] or "root"
    return f"{label}-{hashlib.sha256(str(path).encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class ScratchLayout:
    """Where the scratch of one working directory lives."""

    root: Path
    instance: str

    @classmethod
    def for_workdir(cls, root: str | os.PathLike, workdir: str | os.PathLike) -> ScratchLayout:
        return cls(Path(os.path.abspath(root)), instance_name(workdir))

    @property
    def instance_dir(self) -> Path:
        return self.root / self.instance

    @property
    def lock_path(self) -> Path:
        return self.instance_dir / LOCK_NAME

    def group_dir(self, group: str) -> Path:
        return self.instance_dir / group

    def part(self, group: str, source_stem: str) -> Path:
        """Path of a part, named after its input file (``<time>_sbNN``, or wildcards)."""
        return self.group_dir(group) / f"{source_stem}.part"

    def template(self, group: str) -> Path:
        return self.group_dir(group) / "template.ms"


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700; an existing one must be ours and a dir."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError as exc:
        raise ScratchError(f"{path}: cannot create scratch directory: {exc}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise ScratchError(f"{path}: exists and is not a directory (symlinks are refused)")
    if st.st_uid != os.getuid():
        raise ScratchError(f"{path}: owned by uid {st.st_uid}, not by this user")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)


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
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        for _ in range(10):
            try:
                fd = os.open(path, flags, 0o600)
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

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def acquire_instance(layout: ScratchLayout) -> OwnerLock:
    """Create the instance directory (0700) and take its owner lock, or fail naming the holder."""
    make_private_dir(layout.root)
    make_private_dir(layout.instance_dir)
    lock = OwnerLock.try_acquire(layout.lock_path, create=True)
    if lock is None:
        try:
            holder = layout.lock_path.read_text().strip() or "unknown process"
        except OSError:
            holder = "unknown process"
        raise ScratchError(
            f"{layout.instance_dir}: scratch is in use by a live run ({holder}); "
            "wait for it or run from another working directory"
        )
    lock.describe_owner()
    return lock


def _inside(path: Path, root: Path) -> bool:
    """True if ``path`` (not resolved: its last component may be a symlink) lies inside ``root``."""
    parent = Path(os.path.realpath(path.parent))
    real_root = Path(os.path.realpath(root))
    return parent == real_root or real_root in parent.parents


def remove_tree(path: str | os.PathLike, root: str | os.PathLike) -> None:
    """Remove ``path`` (a directory tree, file or symlink) inside ``root`` and verify it is gone.

    Symlinks are removed, never followed. Failures are retried; a path that is still there
    afterwards raises :class:`ScratchError` naming it. Every removal is counted in the metrics
    (``cleanup`` events: retries, success).
    """
    path, root = Path(os.path.abspath(path)), Path(root)
    if path == Path(os.path.abspath(root)) or not _inside(path, root):
        raise ScratchError(f"{path}: refusing to remove, not inside scratch root {root}")
    last_error: OSError | None = None
    for attempt in range(REMOVE_ATTEMPTS):
        try:
            faults.before_removal(str(path))
            if path.is_symlink() or not path.is_dir():
                path.unlink(missing_ok=True)
            else:
                shutil.rmtree(path)  # fd-based on Linux: does not follow symlinks inside
        except FileNotFoundError:
            pass
        except OSError as exc:
            last_error = exc
            log.warning("removing %s failed (attempt %d): %s", path, attempt + 1, exc)
            time.sleep(0.1 * (attempt + 1))
        if not os.path.lexists(path):
            metrics.emit("cleanup", path=str(path), ok=True, retries=attempt)
            return
    metrics.emit(
        "cleanup", path=str(path), ok=False, retries=REMOVE_ATTEMPTS - 1, error=str(last_error)
    )
    raise ScratchError(f"{path}: could not be removed: {last_error}")


def remove_if_present(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """:func:`remove_tree` if ``path`` exists; True if something was removed."""
    if not os.path.lexists(path):
        return False
    remove_tree(path, root)
    return True


JOB_LOCK_PREFIX = ".cluster-job-"


def claim_group(group_dir: Path, environ=os.environ) -> None:
    """Inside a cluster job: mark ``group_dir`` as this job's (created 0700 if needed), so that
    the job's :class:`NodeJob` removes it when the job ends. Nothing outside a cluster job."""
    job = cluster_job_id(environ)
    if job:
        make_private_dir(group_dir)
        _job_mark(group_dir, job).touch()


def _job_mark(group_dir: Path, job: str) -> Path:
    """The file marking ``group_dir`` as cluster job ``job``'s."""
    return group_dir / f"{JOB_LOCK_PREFIX}{job}"


def _job_lock(instance_dir: Path, job: str) -> Path:
    return instance_dir / f"{JOB_LOCK_PREFIX}{job}.lock"


def _remove_groups_of_job(instance_dir: Path, job: str) -> list[str]:
    """Remove every group directory marked by cluster job ``job``; the paths removed."""
    removed = []
    for group_dir in sorted(instance_dir.iterdir()):
        if _job_mark(group_dir, job).exists():
            remove_tree(group_dir, instance_dir.parent)
            removed.append(str(group_dir))
    return removed


@dataclass
class NodeJob:
    """The Snakemake process that runs one cluster job on a node: it owns, for its life, the
    scratch its jobs claim (:func:`claim_group`), and removes it when it exits.

    Retries run inside the cluster job (the submitting process never resubmits one, see
    :func:`dsa110ms.workflow.retry_inside_cluster_jobs`), so nothing on the node is worth keeping
    after it: :meth:`finish` removes the job's groups whatever the outcome, including groups whose
    part job was killed outright (SIGKILL, OOM killer). A job killed outright itself is cleaned
    by the next :meth:`start` in the same instance on that node."""

    layout: ScratchLayout
    job: str
    lock: OwnerLock

    @classmethod
    def start(cls, layout: ScratchLayout, job: str) -> NodeJob | None:
        """Own the job's scratch on this node; None if a process of the same cluster job owns
        it already (the plugin runs each rule of a group job through a nested Snakemake, under
        the group's own: the outermost one, which lives longest, is the owner)."""
        make_private_dir(layout.root)
        make_private_dir(layout.instance_dir)
        lock = OwnerLock.try_acquire(_job_lock(layout.instance_dir, job), create=True)
        if lock is None:
            return None
        lock.describe_owner()
        node_job = cls(layout, job, lock)
        node_job.sweep_dead_jobs()
        return node_job

    def sweep_dead_jobs(self) -> list[str]:
        """Remove the groups of this instance's cluster jobs on this node that died without
        cleaning up (their lock is free); the paths removed."""
        removed = []
        prefix, suffix = JOB_LOCK_PREFIX, ".lock"
        for lock_path in sorted(self.layout.instance_dir.glob(f"{prefix}*{suffix}")):
            job = lock_path.name[len(prefix) : -len(suffix)]
            if job == self.job:
                continue
            dead = OwnerLock.try_acquire(lock_path, create=False)
            if dead is None:
                continue
            try:
                removed += _remove_groups_of_job(self.layout.instance_dir, job)
                lock_path.unlink(missing_ok=True)
            finally:
                dead.release()
        for path in removed:
            log.info("removed scratch of a cluster job that died on this node: %s", path)
        return removed

    def finish(self) -> None:
        """Remove this job's groups (verified) and its lock."""
        try:
            _remove_groups_of_job(self.layout.instance_dir, self.job)
        finally:
            self.lock.path.unlink(missing_ok=True)
            self.lock.release()


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

    ``keep`` is the caller's own instance (whose lock it holds). A directory is live while any
    of its locks is held: the run's owner lock or a cluster job's (:class:`NodeJob`).
    Directories without any lock file are removed only when older than :data:`UNLOCKED_GRACE_S`.
    """
    root = Path(root)
    report = SweepReport([], [], [])
    if not root.is_dir():
        return report
    for entry in sorted(root.iterdir()):
        if entry.name == keep:
            continue
        if entry.is_symlink() or not entry.is_dir():
            report.failed.append(f"{entry}: not a directory, left alone")
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
            remove_tree(entry, root)
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


def remaining_entries(path: str | os.PathLike) -> list[str]:
    """Everything still under ``path`` (for the end-of-run check), as relative paths."""
    path = Path(path)
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
