"""Small file operations shared by the package."""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

#: Bytes per system call of :func:`copy_bytes` and :func:`copy_region`.
COPY_STEP = 1 << 30
#: O_DIRECT's alignment of file offsets, lengths and memory (bytes): a page, a multiple of every
#: disk's logical block size (512 or 4096 B).
DIRECT_ALIGN = 4096


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


def open_direct(path: str | os.PathLike) -> int | None:
    """``path`` opened for writing with O_DIRECT (the page cache bypassed), or None where its
    file system refuses O_DIRECT."""
    try:
        return os.open(path, os.O_WRONLY | os.O_DIRECT)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return None
        raise


def copy_region(
    source: str | os.PathLike,
    source_offset: int,
    destination: int,
    direct: int | None,
    offset: int,
    count: int,
) -> bool:
    """Copy ``count`` bytes of file ``source`` from ``source_offset`` into file descriptor
    ``destination`` at ``offset``. Where both offsets are aligned (:data:`DIRECT_ALIGN`) and
    ``direct`` (the same file, :func:`open_direct`) is given, the whole aligned blocks are
    written by O_DIRECT from a mapping of the source: the disk reads them straight from the
    source's pages (on tmpfs, already in memory), with no copy into the page cache, no
    writeback after it and no page cache for others to reclaim; the ends, and everything
    else, by :func:`copy_bytes`. Both write whole distinct pages, so they never share one.

    Returns False if the file system refused an O_DIRECT write (EINVAL: a disk whose blocks
    are larger than :data:`DIRECT_ALIGN`), the rest then copied by :func:`copy_bytes`; don't
    pass ``direct`` again. A source shorter than ``source_offset + count`` raises OSError."""
    head = min(count, -offset % DIRECT_ALIGN)
    body = (count - head) // DIRECT_ALIGN * DIRECT_ALIGN
    start = source_offset + head
    with open(source, "rb") as f:
        if (size := os.fstat(f.fileno()).st_size) < source_offset + count:
            raise OSError(f"{source}: {size} bytes, {source_offset + count} expected")
        if direct is None or body == 0 or start % DIRECT_ALIGN:
            copy_bytes(f.fileno(), destination, source_offset, offset, count)
            return True
        copy_bytes(f.fileno(), destination, source_offset, offset, head)
        done = 0
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            while done < body:
                with memoryview(mapped)[start + done : start + min(body, done + COPY_STEP)] as step:
                    try:
                        written = os.pwrite(direct, step, offset + head + done)
                    except OSError as exc:
                        if exc.errno != errno.EINVAL:
                            raise
                        break
                if written <= 0:
                    raise OSError(f"O_DIRECT write at {offset + head + done}: {written} bytes")
                done += written
        rest = head + done
        copy_bytes(f.fileno(), destination, source_offset + rest, offset + rest, count - rest)
        return done == body


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
