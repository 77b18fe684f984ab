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
