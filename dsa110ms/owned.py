"""What this workflow created, and the one function that removes anything.

The workflow may be pointed at shared places (``scratch_root: /dev/shm``, ``/tmp``, an output
directory other tools also write to), so it recognises its own entries by a marker it wrote
itself, never by a name, an age or a location:

- :func:`make_owned_dir` creates a directory and writes :data:`MARKER` into it (a regular file,
  owned by this user). The directory is ours from that moment, with everything in it.
- :func:`remove_owned` is the only function of the package that deletes. It removes ``path``
  only if ``path`` lies strictly inside ``root`` and is, or lies inside, a directory of ours
  (marked), with every directory from ``root`` down to it a real directory (no symlink). It never
  follows a symlink (``path`` itself, if a symlink, is unlinked; ``shutil.rmtree`` is fd-based on
  Linux), never changes a mode or an owner, retries, and verifies the path is gone.

Directories the workflow did not create (``scratch_root`` or ``output_dir`` given by the user,
``/dev/shm``) are used as they are: their mode and owner are never changed.
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

from . import faults, metrics
from .errors import ScratchError

log = logging.getLogger(__name__)

#: The file that marks a directory as created by this workflow.
MARKER = ".dsa110ms-owned"
REMOVE_ATTEMPTS = 3


def _marked(directory: Path) -> bool:
    """``directory`` is a real directory of this user holding our marker (a regular file of
    this user); symlinks are not followed at either level."""
    try:
        st = directory.lstat()
        mark = (directory / MARKER).lstat()
    except OSError:
        return False
    uid = os.getuid()
    return (
        stat.S_ISDIR(st.st_mode)
        and st.st_uid == uid
        and stat.S_ISREG(mark.st_mode)
        and mark.st_uid == uid
    )


def is_owned(directory: str | os.PathLike) -> bool:
    """True if ``directory`` was created by :func:`make_owned_dir` (its marker is there)."""
    return _marked(Path(directory))


def make_owned_dir(path: str | os.PathLike, purpose: str) -> Path:
    """Create ``path`` (mode 0700) and mark it as ours; an existing directory is used if it is
    ours, or if it is an empty directory of this user (a creator killed before writing the
    marker: adopted). Parents are created as plain directories if missing (mode 0700, not
    marked: they are not ours to remove). Raises :class:`ScratchError` naming the path otherwise.
    """
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
    if _marked(path):
        return path
    if st.st_uid != os.getuid():
        raise ScratchError(f"{path}: owned by uid {st.st_uid}, not by this user; not used")
    if any(p.name != MARKER for p in path.iterdir()):
        raise ScratchError(
            f"{path}: exists and was not created by this workflow (no {MARKER} in it); "
            "not used - move it away or choose another path"
        )
    note = f"created by dsa110ms ({purpose}), pid {os.getpid()} on {socket.gethostname()}\n"
    fd = os.open(path / MARKER, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(note)
    return path


def _owned_chain(path: Path, root: Path) -> bool:
    """Every directory from ``root`` down to ``path``'s parent is a real directory, and one of
    them below ``root`` (or ``root`` itself, or ``path`` if a directory) is ours."""
    rel = path.relative_to(root).parts
    chain = [root] + [root.joinpath(*rel[: i + 1]) for i in range(len(rel))]
    for directory in chain[:-1]:
        try:
            if not stat.S_ISDIR(directory.lstat().st_mode):
                return False
        except OSError:
            return False
    return any(_marked(d) for d in chain)


def remove_owned(
    path: str | os.PathLike, root: str | os.PathLike, *, missing_ok: bool = True
) -> bool:
    """Remove ``path`` (a tree, a file or a symlink) if it is ours and inside ``root``; verify
    it is gone. Returns True if something was removed.

    Refused (:class:`ScratchError` naming the path) if ``path`` is ``root`` or outside it, if
    a directory on the way is a symlink, or if no directory from ``root`` down to ``path`` carries
    our marker. Removal failures are retried; a path still there afterwards raises. Every
    removal is a ``cleanup`` event in the metrics (retries, success).
    """
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    if root == path or root not in path.parents:
        raise ScratchError(f"{path}: refusing to remove, not inside {root}")
    if not os.path.lexists(path):
        if missing_ok:
            return False
        raise ScratchError(f"{path}: cannot remove, it does not exist")
    if not _owned_chain(path, root):
        raise ScratchError(
            f"{path}: refusing to remove, not created by this workflow (no {MARKER} on the way "
            f"from {root}) or reached through a symlink"
        )
    last_error: OSError | None = None
    for attempt in range(REMOVE_ATTEMPTS):
        try:
            faults.before_removal(str(path))
            if stat.S_ISDIR(path.lstat().st_mode):
                shutil.rmtree(path)  # fd-based on Linux: never follows symlinks inside
            else:
                path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            last_error = exc
            log.warning("removing %s failed (attempt %d): %s", path, attempt + 1, exc)
            time.sleep(0.1 * (attempt + 1))
        if not os.path.lexists(path):
            metrics.emit("cleanup", path=str(path), ok=True, retries=attempt)
            return True
    metrics.emit(
        "cleanup", path=str(path), ok=False, retries=REMOVE_ATTEMPTS - 1, error=str(last_error)
    )
    raise ScratchError(f"{path}: could not be removed: {last_error}")
