"""The simulator writes files in the correlator's layout, and pyuvdata reads them."""

import warnings

import h5py
import numpy as np
import pytest

from dsa110ms import telescope as tel
from dsa110ms.groups import SubbandFile, scan
from dsa110ms.uvh5 import read_subband


@pytest.fixture(scope="module")
def files(two_groups):
    found, _ = scan(two_groups)
    return found


def test_names_follow_pattern_with_jitter(files):
    assert len(files) == 32
    assert sorted({f.subband for f in files}) == list(range(16))
    first_group = [f for f in files if f.time.minute == 0]
    assert len(first_group) == 16
    assert len({f.time for f in first_group}) > 1, "node clocks should differ by a few seconds"
    spread = max(f.time for f in first_group) - min(f.time for f in first_group)
    assert spread.total_seconds() <= 3


def test_layout_matches_correlator_writer(files):
    f = next(x for x in files if x.subband == 3)
    with h5py.File(f.path) as h:
        header, data = h["Header"], h["Data"]
        assert header["uvw_array"].dtype == np.float32
        uvw = header["uvw_array"][:]
        nbls = int(header["Nbls"][()])
        # meridian UVW repeated for every integration
        np.testing.assert_array_equal(uvw[:nbls], uvw[nbls : 2 * nbls])
        assert header["telescope_name"][()] == b"OVRO_MMA"
        assert header["phase_type"][()] == b"drift"
        assert int(header["Nants_telescope"][()]) == 117
        assert header["antenna_names"].dtype == np.dtype("S4")
        assert header["freq_array"].shape == (1, 48)
        assert np.all(np.diff(header["freq_array"][0]) < 0), "channels descend"
        extra = header["extra_keywords"]
        assert extra["phase_center_epoch"][()] in (b"HADEC", "HADEC")
        assert extra["ha_phase_center"][()] == 0.0
        assert {"fs_table", "applied_delays_ns", "phase_center_dec"} <= set(extra)
        assert data["visdata"].dtype == np.complex64
        assert data["visdata"].shape == (nbls * 3, 1, 48, 2)
        assert data["visdata"].chunks is not None
        assert data["flags"].dtype == bool
        assert data["nsamples"].dtype == np.float32
        a1, a2 = header["ant_1_array"][:nbls], header["ant_2_array"][:nbls]
        assert np.sum(a1 == a2) == 8, "autocorrelations included"
        assert np.any(a1 > a2) and np.any(a1 < a2), "correlator order gives both orderings"
        vis = data["visdata"][:, 0, :, 0]
        cross = np.tile(a1 != a2, 3)
        assert np.ptp(np.angle(vis[cross])) > 1, "point source off centre: phases vary"


def test_pyuvdata_reads_shapes_and_frequencies(files):
    for sb in (0, 7, 15):
        f = next(x for x in files if x.subband == sb)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            uv = read_subband(f.path)
        assert (uv.Ntimes, uv.Nbls, uv.Nfreqs, uv.Npols) == (3, 36, 48, 2)
        np.testing.assert_allclose(uv.freq_array, tel.subband_frequencies(sb), rtol=0, atol=1e-6)
        assert uv.telescope.name == "OVRO_MMA"
        assert uv.extra_keywords["phase_center_dec"] == pytest.approx(np.radians(55.0))


def test_frequency_plan():
    top = tel.subband_frequencies(0)
    bottom = tel.subband_frequencies(15)
    assert top[0] == pytest.approx(1498.64319e6, abs=10)
    assert bottom[-1] == pytest.approx(1311.38733e6, abs=10)
    allf = np.sort(np.concatenate([tel.subband_frequencies(s) for s in range(16)]))
    np.testing.assert_allclose(np.diff(allf), 244140.625)


def test_subband_file_parsing():
    assert SubbandFile.from_path("/x/2026-01-15T03:00:02_sb07.hdf5").subband == 7
    assert SubbandFile.from_path("/x/2026-01-15T03:00:02_sb07_incomplete.hdf5") is None
    assert SubbandFile.from_path("/x/2026-13-15T03:00:02_sb07.hdf5") is None


def test_simulate_rule_and_command(tmp_path, scratch_root):
    from .conftest import run_snakemake

    spec = {"n_groups": 2, "subbands": [0, 15], "n_antennas": 4, "n_integrations": 2}
    config = {"input_dir": "in", "simulate": spec, "scratch_root": scratch_root}
    run_snakemake(tmp_path, "simulate", "--cores", "1", config=config)
    files, _ = scan(tmp_path / "in")
    assert len(files) == 4 and (tmp_path / "in" / "simulation.json").exists()

    from dsa110ms.simulate import main

    assert main([str(tmp_path / "cli"), "--subbands", "3", "--antennas", "3"]) == 0
    (f,) = scan(tmp_path / "cli")[0]
    with h5py.File(f.path) as h:
        assert int(h["Header/Nbls"][()]) == 6 and f.subband == 3
