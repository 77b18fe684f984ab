"""What this workflow created, and the one function that removes anything.

The workflow may be pointed at shared places (``scratch_root: /dev/shm``, ``/tmp``, an output
directory other tools also write to), so it recognises its own entries by a marker it wrote
itself, never by a name, an age or a location:

- :func:`make_owned_dir` creates a directory and writes :data:`MARKER` into it (a regular file,
  owned by this user, naming what the directory is for: its *kind*). The directory is ours from
  that moment, with everything in it.
- :func:`remove_owned` is the only function of the package that deletes. It removes ``path``
  only if ``path`` lies strictly inside ``root`` and is, or lies inside, a directory of ours
  (marked). It walks from ``root`` down with directory file descriptors opened with
  ``O_NOFOLLOW``, checks the marker through them and removes through them
  (``shutil.rmtree(dir_fd=...)``), so a symlink is never followed, not even one swapped in for a
  directory while the removal runs: what is removed is what was checked. It never changes a mode
  or an owner, retries, and verifies the path is gone.

Directories the workflow did not create (``scratch_root`` or ``output_dir`` given by the user,
``/dev/shm``) are used as they are: their mode and owner are never changed. ``root`` itself may
be a symlink (``output_dir: /data/ms`` pointing at a larger disk): it is the user's choice of
place; below it nothing is followed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import stat
import time
from pathlib import Path

from dsa110ms import faults
from dsa110ms.errors import ScratchError
from dsa110ms.observe import metrics

log = logging.getLogger(__name__)

#: The file that marks a directory as created by this workflow; its first line is the kind.
MARKER = ".dsa110ms-owned"
REMOVE_ATTEMPTS = 3
#: How a directory is opened to be looked into: never through a symlink.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _marker_kind(dir_fd: int) -> str | None:
    """The kind written in the marker of the directory open at ``dir_fd``, if the directory
    and its marker (a regular file, not a link) are this user's; else None."""
    uid = os.getuid()
    try:
        if os.fstat(dir_fd).st_uid != uid:
            return None
        fd = os.open(MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
            return None
        return os.read(fd, 200).decode(errors="replace").partition("\n")[0].strip()
    finally:
        os.close(fd)


def owned_kind(directory: str | os.PathLike) -> str | None:
    """The kind of a directory created by :func:`make_owned_dir` (None if it is not ours)."""
    try:
        fd = os.open(directory, DIR_FLAGS)
    except OSError:
        return None
    try:
        return _marker_kind(fd)
    finally:
        os.close(fd)


def is_owned(directory: str | os.PathLike) -> bool:
    """True if ``directory`` was created by :func:`make_owned_dir` (its marker is there)."""
    return owned_kind(directory) is not None


def make_owned_dir(path: str | os.PathLike, kind: str) -> Path:
    """Create ``path`` (mode 0700) and mark it as ours, of ``kind`` (what it is for); an
    existing directory is used if it is ours and of that kind, or if it is an empty directory
    of this user (a creator killed before writing the marker: adopted). Parents are created as
    plain directories if missing (mode 0700, not marked: they are not ours to remove). Raises
    :class:`ScratchError` naming the path otherwise."""
    path = Path(os.path.abspath(path))
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        st = path.lstat()
    except OSError as exc:
        raise ScratchError(f"{path}: cannot create directory: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ScratchError(f"{path}: exists and is not a directory (symlinks are refused)")
    found = owned_kind(path)
    if found == kind:
        return path
    if found is not None:
        raise ScratchError(f"{path}: is this workflow's {found}, not a {kind}; use another path")
    if st.st_uid != os.getuid():
        raise ScratchError(f"{path}: owned by uid {st.st_uid}, not by this user; not used")
    if any(p.name != MARKER for p in path.iterdir()):
        raise ScratchError(
            f"{path}: exists and was not created by this workflow (no {MARKER} in it); "
            "not used - move it away or choose another path"
        )
    note = f"{kind}\ncreated by dsa110ms, pid {os.getpid()} on {socket.gethostname()}\n"
    fd = os.open(path / MARKER, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(note)
    return path


def open_own_file(path: str | os.PathLike, *, create: bool = True) -> int:
    """Open a small file of ours for reading and writing (a lock file, which says who holds
    it): a regular file of this user with one link, never through a symlink or a hard link to
    someone's file (writing it truncates it). Raises FileNotFoundError if it does not exist and
    not ``create``, :class:`ScratchError` if it is not ours."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ScratchError(f"{path}: cannot open it as a lock file: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != os.getuid():
        os.close(fd)
        raise ScratchError(f"{path}: not a lock file of this workflow (linked elsewhere?)")
    return fd


def _refuse(path: Path, why: str) -> ScratchError:
    return ScratchError(f"{path}: refusing to remove, {why}")


def remove_owned(
    path: str | os.PathLike, root: str | os.PathLike, *, missing_ok: bool = True
) -> bool:
    """Remove ``path`` (a tree, a file or a symlink) if it is ours and inside ``root``; verify
    it is gone. Returns True if something was removed.

    Refused (:class:`ScratchError` naming the path) if ``path`` is ``root`` or outside it, if a
    directory on the way below ``root`` is a symlink, or if no directory from ``root`` down to
    ``path`` carries our marker. Removal failures are retried; a path still there afterwards
    raises. Every removal is a ``cleanup`` event in the metrics (retries, success).
    """
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    if root == path or root not in path.parents:
        raise _refuse(path, f"not inside {root}")
    *dirs, name = path.relative_to(root).parts
    fds = []
    try:
        try:
            fds.append(os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            for part in dirs:
                fds.append(os.open(part, DIR_FLAGS, dir_fd=fds[-1]))
            st = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
        except FileNotFoundError:
            if missing_ok:
                return False
            raise ScratchError(f"{path}: cannot remove, it does not exist") from None
        except OSError as exc:  # ELOOP/ENOTDIR: a symlink or a file on the way
            why = f"a directory on the way is not a real directory ({exc.strerror})"
            raise _refuse(path, why) from None
        owned = any(_marker_kind(fd) is not None for fd in fds)
        if not owned and stat.S_ISDIR(st.st_mode):  # ``path`` itself may be the marked one
            with contextlib.suppress(OSError):
                fds.append(os.open(name, DIR_FLAGS, dir_fd=fds[-1]))
                owned = _marker_kind(fds[-1]) is not None
        if not owned:
            raise _refuse(
                path, f"not created by this workflow (no {MARKER} on the way from {root})"
            )
        parent_fd = fds[len(dirs)]  # the directory holding ``name``
        return _remove_at(parent_fd, name, path, stat.S_ISDIR(st.st_mode))
    finally:
        for fd in fds:
            os.close(fd)


def remove_abandoned(directory: str | os.PathLike, matches, older_than_s: float) -> list[Path]:
    """Remove the entries of ``directory`` whose names ``matches`` (a predicate) and that are
    older than ``older_than_s`` (by mtime): what processes killed while writing them left.
    Only ours (:func:`remove_owned`); what cannot be looked at or removed is left as it is.
    Returns what was removed."""
    directory = Path(directory)
    removed = []
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if not matches(entry.name):
                continue
            with contextlib.suppress(OSError, ScratchError):
                age = time.time() - entry.stat(follow_symlinks=False).st_mtime
                if age > older_than_s and remove_owned(Path(entry.path), directory):
                    removed.append(Path(entry.path))
    return removed


def _remove_at(parent_fd: int, name: str, path: Path, is_dir: bool) -> bool:
    """Remove ``name`` in the directory open at ``parent_fd`` (``path`` names it in messages
    and metrics), retrying; verify it is gone."""
    last_error: OSError | None = None
    for attempt in range(REMOVE_ATTEMPTS):
        try:
            faults.before_removal(str(path))
            if is_dir:
                shutil.rmtree(name, dir_fd=parent_fd)  # fd-based: never follows symlinks inside
            else:
                os.unlink(name, dir_fd=parent_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            last_error = exc
            log.warning("removing %s failed (attempt %d): %s", path, attempt + 1, exc)
            time.sleep(0.1 * (attempt + 1))
        try:
            os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            metrics.emit("cleanup", path=str(path), ok=True, retries=attempt)
            return True
    metrics.emit(
        "cleanup", path=str(path), ok=False, retries=REMOVE_ATTEMPTS - 1, error=str(last_error)
    )
    raise ScratchError(f"{path}: could not be removed: {last_error}")
