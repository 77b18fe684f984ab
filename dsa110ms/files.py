"""Small file operations shared by the package."""

from __future__ import annotations

import os
from pathlib import Path

#: Bytes per system call of :func:`copy_bytes`.
COPY_STEP = 1 << 30


def copy_bytes(source: int, destination: int, source_offset: int, offset: int, count: int):
    """Copy ``count`` bytes of file descriptor ``source`` from ``source_offset`` to
    ``destination`` at ``offset``, in the kernel (``sendfile``: one copy, page cache to page
    cache, across file systems, where ``copy_file_range`` refuses tmpfs -> disk)."""
    os.lseek(destination, offset, os.SEEK_SET)
    done = 0
    while done < count:
        sent = os.sendfile(destination, source, source_offset + done, min(count - done, COPY_STEP))
        if sent == 0:
            raise OSError(f"sendfile: source ended {count - done} bytes early")
        done += sent


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` (parents created) through a hidden file beside it and a
    rename, so a reader sees the old content or the new, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(text)
    os.replace(staging, path)


def input_identity(path: str | os.PathLike) -> dict:
    """What says that an input file is the one an MS was made from: its name, size (bytes) and
    modification time (ns since the Unix epoch). A file written again, or re-sent by a copy
    that does not keep its time, has another mtime; one re-sent keeping its time (``rsync -t``)
    is still caught if its size differs. Not the inode or ctime: they change when the files are
    only moved or restored (another disk, a backup), and ctime with every ``chmod``."""
    st = os.stat(path)
    return {"file": os.path.basename(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
