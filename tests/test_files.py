"""Byte copies of the join (dsa110ms.files.copy_region): O_DIRECT where aligned, the kernel's copy
elsewhere, on the file systems the workflow writes to (a disk and tmpfs)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dsa110ms.files import DIRECT_ALIGN, copy_region, open_direct
from dsa110ms.ms.part import save_aligned

from .conftest import SCRATCH_PARENT

A = DIRECT_ALIGN


@pytest.fixture(params=["disk", "tmpfs"])
def where(request, tmp_path):
    if request.param == "disk":
        yield tmp_path
        return
    d = Path(SCRATCH_PARENT) / f"dsa110ms-test-files-{os.getpid()}"
    d.mkdir()
    yield d
    for f in d.iterdir():
        f.unlink()
    d.rmdir()


@pytest.mark.parametrize(
    ("offset", "count"),
    [(0, 5 * A), (0, 5 * A + 100), (3 * A, 2 * A), (A - 100, 3 * A), (A - 100, 3 * A + 100),
     (100, 50), (7, 0)],
)  # fmt: skip
def test_copy_region_writes_exactly_the_bytes_asked(where, offset, count):
    """Whatever the alignment of offset and count, the destination holds the source's bytes at
    offset and nothing else changes; the aligned body goes by O_DIRECT (bypassing the page
    cache) where the file system takes it."""
    rng = np.random.default_rng(offset + count)
    values = rng.integers(0, 255, 8 * A, dtype=np.uint8)
    source = where / "source.npy"
    save_aligned(source, values)
    destination = where / "destination"
    before = rng.integers(0, 255, 10 * A, dtype=np.uint8).tobytes()
    destination.write_bytes(before)
    fd, direct = os.open(destination, os.O_WRONLY), open_direct(destination)
    assert direct is not None  # both take O_DIRECT here (tmpfs since Linux 6.6)
    try:
        copy_region(source, A, fd, direct, offset, count)
    finally:
        os.close(fd)
        if direct is not None:
            os.close(direct)
    after = destination.read_bytes()
    assert after[offset : offset + count] == values[:count].tobytes()
    assert after[:offset] == before[:offset] and after[offset + count :] == before[offset + count :]


def test_saved_arrays_start_at_the_alignment_and_load_as_numpy_files(tmp_path):
    values = np.arange(24, dtype=np.complex64).reshape(2, 3, 4)
    save_aligned(tmp_path / "a.npy", values)
    assert np.array_equal(np.load(tmp_path / "a.npy"), values)
    assert (tmp_path / "a.npy").stat().st_size == A + values.nbytes
