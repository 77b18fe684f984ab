"""Lean part writing (h5py only) against pyuvdata's own conventions, and part checking."""

from __future__ import annotations

import itertools
import json
import shutil

import h5py
import numpy as np
import pytest

from dsa110ms import rawuvh5
from dsa110ms.errors import CorruptDataError, UnwrittenDataError, ValidationError
from dsa110ms.groups import discover
from dsa110ms.ms.part import MANIFEST_NAME, open_part, write_part


@pytest.mark.parametrize(
    "pols", [(-5, -6), (-6, -5), (-5, -6, -7, -8), (-8, -7, -6, -5), (1,), (-1, -2, -3, -4)]
)
def test_casa_pol_order_is_pyuvdatas(pols):
    from pyuvdata.utils.pol import determine_pol_order

    want = determine_pol_order(np.array(pols), order="CASA")
    np.testing.assert_array_equal(rawuvh5.casa_pol_order(pols), want)


@pytest.mark.parametrize("keep_autos", [True, False])
@pytest.mark.parametrize("case", ["mixed", "all_lower", "all_upper"])
def test_row_order_is_pyuvdatas_select_and_conjugation(keep_autos, case):
    """Rows, antennas and which rows keep the file's value, as pyuvdata's select and
    conjugate_bls("ant1<ant2") + flip_conj leave them."""
    from pyuvdata import UVData

    uv = UVData.new(
        freq_array=np.array([1.4e9]),
        polarization_array=np.array([-5]),
        telescope=_telescope(),
        times=np.array([2460000.5, 2460000.51]),
        antpairs=_antpairs(case),
        do_blt_outer=True,
        empty=True,
    )
    uv.data_array = (np.arange(uv.Nblts) + 1j * (np.arange(uv.Nblts) + 1)).reshape(-1, 1, 1)
    file_values = uv.data_array[:, 0, 0].copy()
    got = rawuvh5.ms_row_order(uv.ant_1_array, uv.ant_2_array, keep_autocorrelations=keep_autos)
    if not keep_autos:
        uv.select(ant_str="cross")
    if np.any(uv.ant_1_array < uv.ant_2_array) and np.any(uv.ant_1_array > uv.ant_2_array):
        uv.conjugate_bls("ant1<ant2")
    written = np.conj(uv.data_array[:, 0, 0])  # write_ms: flip_conj
    np.testing.assert_array_equal(got.ant_1, uv.ant_1_array)
    np.testing.assert_array_equal(got.ant_2, uv.ant_2_array)
    values = file_values[got.rows]
    np.testing.assert_array_equal(np.where(got.keep_value, values, np.conj(values)), written)


def _antpairs(case):
    pairs = [(a, b) for a, b in itertools.product(range(4), repeat=2) if a <= b]
    if case == "all_upper":
        return [(b, a) for a, b in pairs]
    if case == "mixed":
        return [(b, a) if (a + b) % 2 else (a, b) for a, b in pairs]
    return pairs


def _telescope():
    from astropy.coordinates import EarthLocation
    from pyuvdata import Telescope

    return Telescope.new(
        name="TEST",
        location=EarthLocation.from_geodetic(-118.28, 37.23, 1222.0),
        antenna_positions={i: np.array([10.0 * i, 3.0 * i, 0.0]) for i in range(4)},
        instrument="TEST",
    )


def test_chunked_reader_equals_hdf5_for_every_layout(tmp_path):
    values = np.arange(2 * 3 * 50, dtype=np.float32).reshape(50, 3, 2)
    path = str(tmp_path / "f.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("chunked", data=values, chunks=(7, 2, 1))  # edge chunks are partial
        f.create_dataset("compressed", data=values, chunks=(7, 2, 1), compression="gzip")
        f.create_dataset("contiguous", data=values)
        f.create_dataset("sparse", shape=values.shape, dtype=values.dtype, chunks=(7, 3, 2))
        f["sparse"][:7] = values[:7]  # other chunks never written: HDF5 reads its fill value
    with h5py.File(path) as f:
        for name in ("chunked", "compressed", "contiguous"):
            np.testing.assert_array_equal(rawuvh5._read(f[name], path), f[name][()], err_msg=name)
        # the fast reader never fills in a chunk never written (the file is refused before)
        with pytest.raises(CorruptDataError, match=r"/sparse: its chunk at offset \(7, 0, 0\)"):
            rawuvh5._read(f["sparse"], path)
        with pytest.raises(UnwrittenDataError, match="/sparse has 7 of 8 chunks never written"):
            rawuvh5.refuse_unwritten(f, path)


def test_geometry_digest_shared_by_a_group_and_changed_by_times(two_groups, tmp_path):
    group = next(iter(discover(two_groups)))
    digests = {rawuvh5.file_geometry_digest(f, telescope="dsa110") for f in group.files.values()}
    assert len(digests) == 1
    other = tmp_path / "other.hdf5"
    shutil.copyfile(group.files[3], other)
    with h5py.File(other, "r+") as f:
        f["Header/time_array"][0] += 1e-6
    assert rawuvh5.file_geometry_digest(other, telescope="dsa110") not in digests


def test_part_is_complete_only_with_its_manifest(two_groups, tmp_path):
    group = next(iter(discover(two_groups)))
    part = write_part(group.files[5], tmp_path / "g" / "sb05.part")
    assert oct((tmp_path / "g").stat().st_mode & 0o777) == "0o700"
    manifest = json.loads((part / MANIFEST_NAME).read_text())
    assert manifest["rows"] == open_part(part).array("DATA").shape[0] == 3 * 36
    freqs = open_part(part).chan_freq
    assert np.all(np.diff(freqs) > 0), "channels ascend"
    (part / MANIFEST_NAME).unlink()
    with pytest.raises(ValidationError, match="incomplete or unreadable part"):
        open_part(part)
