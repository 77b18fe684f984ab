"""Room on file systems, and how much scratch the workflow's files take.

Sizes come from the data's shape (:class:`dsa110ms.inventory.DataShape`, read from each file's
HDF5 metadata, cached in the inventory by the main process), never from a file's size: a
compressed file of 250 KB can hold a part of several MB. Used by the run's admission of groups
by scratch space (:mod:`dsa110ms.run.scratch`), by each template and part job before it writes
(one line instead of casacore aborting half-way), and by the join for the output's room.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dsa110ms.errors import ScratchError
from dsa110ms.inventory import DataShape, HeaderError, read_header
from dsa110ms.ms.layout import POLARIZATION_COLUMNS, ROW_ARRAYS, SPECTRAL_COLUMNS, VALUE_DTYPES

#: A part's files (:mod:`dsa110ms.ms.part`): per value (row, channel, polarization) DATA,
#: FLAG and WEIGHT_SPECTRUM; per row and polarization WEIGHT and SIGMA; per row FLAG_ROW and
#: ANTENNA1/2 (int32); per channel CHAN_FREQ and CHAN_WIDTH (float64); then the .npy headers,
#: part.json and the file system's pages (11 files). Exact to 0.1 % on tmpfs (3 to 48
#: antennas, 2 to 30 integrations, 8 to 384 channels).
PART_BYTES_PER_VALUE = sum(
    np.dtype(VALUE_DTYPES[SPECTRAL_COLUMNS[c]]).itemsize
    for c in ROW_ARRAYS
    if c in SPECTRAL_COLUMNS
)
PART_BYTES_PER_ROW_AND_POL = sum(
    np.dtype(VALUE_DTYPES[t]).itemsize for t in POLARIZATION_COLUMNS.values()
)
PART_BYTES_PER_ROW = 1 + 2 * 4
PART_BYTES_PER_CHANNEL = 2 * 8
PART_FIXED_BYTES = 64 * 1024
#: A group's template (pyuvdata's MS of one channel): measured on tmpfs 1.9 MB of subtables,
#: ~38 bytes a row and ~23 kB an integration (a FIELD and POINTING rows each); bounded by these.
TEMPLATE_BYTES = 2_000_000
TEMPLATE_BYTES_PER_ROW = 64
TEMPLATE_BYTES_PER_TIME = 32_000
#: A file whose shape is unknown (unreadable: its job fails and says why) is sized as if its
#: data were stored uncompressed: as many bytes of part as of file.
PART_BYTES_PER_INPUT_BYTE = 1.0
#: Headroom on the estimate (file system blocks, metadata).
ESTIMATE_MARGIN = 1.10


def file_bytes(path: str | os.PathLike) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # reported by discovery or by its job; nothing to reserve for it


def shape_of(path: str | os.PathLike) -> DataShape | None:
    """A file's data shape read from its header (~1 ms), or None if it cannot be read. The
    main process asks its inventory instead (:meth:`dsa110ms.inventory.Inventory.data_shape`,
    cached)."""
    try:
        return read_header(str(path))[0].shape
    except HeaderError:
        return None


def part_bytes(path: str | os.PathLike, shape: DataShape | None) -> int:
    """Bytes of scratch the part of the file ``path`` takes (its data's ``shape``; if unknown,
    the file's size), with the margin."""
    if shape is None:
        exact = PART_BYTES_PER_INPUT_BYTE * file_bytes(path)
    else:
        exact = (
            PART_BYTES_PER_VALUE * shape.values
            + (PART_BYTES_PER_ROW_AND_POL * shape.npols + PART_BYTES_PER_ROW) * shape.nblts
            + PART_BYTES_PER_CHANNEL * shape.nfreqs
            + PART_FIXED_BYTES
        )
    return int(exact * ESTIMATE_MARGIN)


def template_bytes(source: str | os.PathLike, shape: DataShape | None = None) -> int:
    """Scratch a group's template takes at most, from its source file's data ``shape`` (read
    from the file if not given; if unknown, as many rows as a file of its size could hold)."""
    shape = shape or shape_of(source)
    if shape is None:  # unreadable: its job fails; as many rows as one channel could fill
        rows, times = file_bytes(source) // PART_BYTES_PER_VALUE, 1
    else:
        rows, times = shape.nblts, shape.ntimes
    exact = TEMPLATE_BYTES + TEMPLATE_BYTES_PER_ROW * rows + TEMPLATE_BYTES_PER_TIME * times
    return int(exact * ESTIMATE_MARGIN)


def free_bytes(root: str | os.PathLike) -> int:
    """Bytes this user may still write on the file system of ``root`` (or of its nearest
    existing parent, before the run creates it)."""
    path = Path(os.path.abspath(root))
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check_room(directory: str | os.PathLike, need_bytes: int, what: str) -> None:
    """Refuse to start writing ``what`` (e.g. "the group's template") on the scratch holding
    ``directory`` if fewer than ``need_bytes`` are free there: one line, instead of casacore
    aborting half-way (an empty log) or a later job finding the files it needs gone."""
    free = free_bytes(directory)
    if free < need_bytes:
        raise ScratchError(out_of_scratch(directory, free, need_bytes, what))


def out_of_scratch(directory: str | os.PathLike, free: int, need_bytes: int, what: str) -> str:
    """The one line of a job that ran out of scratch space."""
    return (
        f"out of scratch space on {mount_point(directory)} ({free / 1e6:.0f} MB free, "
        f"{what} needs ~{need_bytes / 1e6:.0f} MB): give scratch_root more room or run fewer "
        "jobs at once"
    )


def mount_point(path: str | os.PathLike) -> Path:
    """The mount point of the file system holding ``path`` (or its nearest existing parent)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path
