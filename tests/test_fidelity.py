"""Scientific fidelity of published MSs: layouts, imaging columns, metadata, generic mode."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from dsa110ms import casa
from dsa110ms import telescope as tel
from dsa110ms.groups import discover, subband_file_name
from dsa110ms.ms.layout import ON_SOURCE

from .conftest import REPO, convert
from .msdata import assert_same_ms, read_ms

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def single_layout(two_groups, tmp_path_factory):
    """The first of the two groups again, as one SPW with MODEL_DATA and CORRECTED_DATA."""
    first = next(iter(discover(two_groups)))
    work = tmp_path_factory.mktemp("single")
    out = convert(
        two_groups,
        work,
        spw_layout="single",
        imaging_columns="model_corrected",
        start_time=first.id,
        end_time=first.id,
    )
    return first, out / f"{first.id}.ms"


@pytest.fixture(scope="module")
def per_subband(two_groups, converted):
    """The first group with the default layout (from the shared two-group run)."""
    first = next(iter(discover(two_groups)))
    return Path(converted[1]["output_dir"]) / f"{first.id}.ms"


def test_single_and_per_subband_hold_the_same_visibilities(single_layout, per_subband):
    _, single_ms = single_layout
    single, multi = read_ms(single_ms), read_ms(per_subband)
    assert len(single.spw_freqs) == 1 and len(single.spw_freqs[0]) == 768
    assert len(multi.spw_freqs) == 16
    np.testing.assert_array_equal(single.spw_freqs[0], np.concatenate(multi.spw_freqs))
    width = np.diff(single.spw_freqs[0])
    np.testing.assert_allclose(width, 244140.625, rtol=0, atol=1e-3)
    for spw in range(16):
        rows = np.flatnonzero(multi.spw == spw)
        np.testing.assert_array_equal(multi.time[rows], single.time)
        np.testing.assert_array_equal(multi.ant1[rows], single.ant1)
        np.testing.assert_array_equal(multi.ant2[rows], single.ant2)
        np.testing.assert_array_equal(multi.uvw[rows], single.uvw)
        chans = slice(48 * spw, 48 * (spw + 1))
        np.testing.assert_array_equal(multi.data[rows], single.data[:, chans])
        np.testing.assert_array_equal(multi.flag[rows], single.flag[:, chans])
        np.testing.assert_array_equal(multi.weight_spectrum[rows], single.weight_spectrum[:, chans])


def test_imaging_columns(single_layout, per_subband):
    _, single_ms = single_layout
    with casa.table(single_ms) as tb:
        data = tb.getcol("DATA")
        np.testing.assert_array_equal(tb.getcol("CORRECTED_DATA"), data)
        assert not np.any(tb.getcol("MODEL_DATA"))
    with casa.table(per_subband) as tb:
        assert "MODEL_DATA" not in tb.colnames() and "CORRECTED_DATA" not in tb.colnames()


def spectral_window(ms):
    with casa.table(f"{ms}/SPECTRAL_WINDOW") as tb:
        return {c: [tb.getcell(c, i) for i in range(tb.nrows())] for c in tb.colnames()}


@pytest.mark.parametrize("layout", ["single", "per_subband"])
def test_spectral_window_table_is_consistent(layout, single_layout, per_subband):
    ms = single_layout[1] if layout == "single" else per_subband
    spw = spectral_window(ms)
    for i, freqs in enumerate(spw["CHAN_FREQ"]):
        assert np.all(np.diff(freqs) > 0)
        assert np.all(spw["CHAN_WIDTH"][i] > 0)
        assert spw["NUM_CHAN"][i] == len(freqs)
        assert spw["TOTAL_BANDWIDTH"][i] == pytest.approx(np.sum(spw["CHAN_WIDTH"][i]))
        assert spw["REF_FREQUENCY"][i] == freqs[0]
    lows = [f[0] for f in spw["CHAN_FREQ"]]
    assert lows == sorted(lows)


@pytest.mark.parametrize("layout", ["single", "per_subband"])
def test_pyuvdata_reads_our_ms_back_equal_to_the_input_files(layout, single_layout, per_subband):
    """Data, flags, nsamples, frequencies and times of the MS as pyuvdata reads it are those of
    the 16 input files (autocorrelations kept); SPWs are numbered as pyuvdata numbers them."""
    from pyuvdata import UVData
    from pyuvdata.utils import XYZ_from_LatLonAlt

    from dsa110ms.uvh5 import read_subband

    first = single_layout[0]
    ms = single_layout[1] if layout == "single" else per_subband
    got = UVData.from_file(str(ms))
    inputs = [read_subband(str(first.files[sb])) for sb in sorted(first.files)]
    want = inputs[0].fast_concat(inputs[1:], axis="freq", inplace=False)
    for uv in (got, want):
        uv.conjugate_bls("ant1<ant2")
        uv.reorder_blts(order="time", minor_order="baseline")
        uv.reorder_freqs(channel_order="freq")
        uv.reorder_pols("AIPS")
    np.testing.assert_array_equal(got.freq_array, want.freq_array)
    time_tolerance = got._time_array.tols[1]  # days: MJD seconds in the MS, JD in pyuvdata
    np.testing.assert_allclose(got.time_array, want.time_array, rtol=0, atol=time_tolerance)
    np.testing.assert_array_equal(got.ant_1_array, want.ant_1_array)
    np.testing.assert_array_equal(got.ant_2_array, want.ant_2_array)
    np.testing.assert_array_equal(got.data_array, want.data_array.astype(np.complex64))
    np.testing.assert_array_equal(got.flag_array, want.flag_array)
    np.testing.assert_array_equal(got.nsample_array, want.nsample_array)
    names = spectral_window(ms)["NAME"]
    assert len(set(names)) == len(names) == (1 if layout == "single" else 16)
    # the telescope is DSA-110's, by name and at its exact reference position
    assert got.telescope.name == tel.MS_TELESCOPE_NAME == "DSA_110"
    assert got.extra_keywords["observer"] == tel.OBSERVER
    location = got.telescope.location
    xyz = np.array([c.to_value("m") for c in (location.x, location.y, location.z)])
    reference = XYZ_from_LatLonAlt(
        np.radians(tel.LATITUDE_DEG), np.radians(tel.LONGITUDE_DEG), tel.ALTITUDE_M
    )
    assert np.linalg.norm(xyz - reference) < 1e-6


def test_pyuvdata_reads_a_split_of_our_ms(per_subband, tmp_path, monkeypatch):
    """A CASA split of some SPWs keeps their distinct numbers: pyuvdata reads it. (split drops
    pyuvdata's OBSERVATION::TELESCOPE_LOCATION, so pyuvdata looks the telescope name up, also in
    astropy's site list, which astropy downloads: not here, so that list is empty.)"""
    from astropy.coordinates import EarthLocation
    from pyuvdata import UVData

    monkeypatch.setattr(EarthLocation, "get_site_names", classmethod(lambda cls: []))
    split = tmp_path / "split.ms"
    casa.tasks().split(vis=str(per_subband), outputvis=str(split), spw="3~5", datacolumn="data")
    got = UVData.from_file(str(split))
    want = spectral_window(per_subband)["CHAN_FREQ"][3:6]
    np.testing.assert_array_equal(np.sort(got.freq_array), np.concatenate(want))
    assert got.Nspws == 3


def test_metadata_pyuvdata_leaves_empty(per_subband, two_groups):
    ms = per_subband
    with casa.table(ms) as tb:
        time, interval = tb.getcol("TIME"), tb.getcol("INTERVAL")
        flag, flag_row = tb.getcol("FLAG"), tb.getcol("FLAG_ROW")
        weight, sigma, spectrum = (
            tb.getcol("WEIGHT"),
            tb.getcol("SIGMA"),
            tb.getcol("WEIGHT_SPECTRUM"),
        )
        state_ids = np.unique(tb.getcol("STATE_ID"))
        scans = np.unique(tb.getcol("SCAN_NUMBER"))
        ant1, ant2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
    np.testing.assert_array_equal(flag_row, flag.all(axis=(0, 1)))
    np.testing.assert_allclose(weight, spectrum.mean(axis=1))
    np.testing.assert_allclose(sigma, 1 / np.sqrt(weight))
    with casa.table(f"{ms}/OBSERVATION") as tb:
        assert tb.nrows() == 1
        assert tb.getcell("TELESCOPE_NAME", 0) == "DSA_110"  # dsa110ms.telescope
        assert tb.getcell("OBSERVER", 0) == tel.OBSERVER
        np.testing.assert_allclose(
            tb.getcell("TIME_RANGE", 0),
            [(time - interval / 2).min(), (time + interval / 2).max()],
        )
    with casa.table(f"{ms}/STATE") as tb:
        assert list(state_ids) == [0] and tb.nrows() == 1
        assert tb.getcell("OBS_MODE", 0) == ON_SOURCE
    with casa.table(f"{ms}/ANTENNA") as tb:
        assert set(tb.getcol("MOUNT")) == {"alt-az"}
        np.testing.assert_array_equal(tb.getcol("DISH_DIAMETER"), 4.65)
        positions = tb.getcol("POSITION").T
    group = next(iter(discover(two_groups)))
    import h5py

    from dsa110ms.telescope import pad_positions_ecef_offsets

    with h5py.File(group.files[0]) as f:
        np.testing.assert_allclose(f["Header/antenna_positions"][:], pad_positions_ecef_offsets())
    offsets = positions - positions[0]
    np.testing.assert_allclose(
        offsets, pad_positions_ecef_offsets() - pad_positions_ecef_offsets()[0], atol=1e-6
    )
    assert np.any(ant1 == ant2), "autocorrelations kept by default"
    # one scan per integration, one field per integration (documented)
    assert len(scans) == len(np.unique(time)) == 3


def test_listobs_and_msmetadata_read_every_output(single_layout, per_subband):
    for ms, nspw in ((single_layout[1], 1), (per_subband, 16)):
        summary = casa.tasks().listobs(vis=str(ms), listfile="")
        assert summary["nfields"] == 3
        msmd = casa.tools().msmetadata()
        msmd.open(str(ms))
        try:
            assert msmd.nspw() == nspw
            assert msmd.nfields() == 3 and msmd.nscans() == 3
            assert msmd.nantennas() == 117
        finally:
            msmd.done()


# --- generic mode ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generic_input(two_groups, tmp_path_factory):
    """A non-DSA object: another telescope name, phased to a fixed source, 4 subbands of 12
    ascending channels, split from one pyuvdata object by frequency and written as UVH5."""
    from dsa110ms.uvh5 import read_subband

    first = next(iter(discover(two_groups)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv = read_subband(first.files[7])
        uv.telescope.name = "TEST_ARRAY"
        uv.phase(ra=0.7, dec=0.9, cat_name="target")
        uv.reorder_freqs(channel_order="freq")
        d = tmp_path_factory.mktemp("generic")
        for k in range(4):
            sub = uv.select(freq_chans=np.arange(12 * k, 12 * (k + 1)), inplace=False)
            sub.write_uvh5(str(d / subband_file_name(first_time(first.id), k)))
        reference = d.parent / "generic_reference.ms"
        uv.write_ms(str(reference))
    return d, reference


def first_time(group_id):
    import datetime as dt

    return dt.datetime.fromisoformat(group_id)


def sorted_rows(ms):
    cols = read_ms(ms)
    order = np.lexsort((cols.ant2, cols.ant1, cols.time))
    return cols, order


def test_generic_mode_equals_pyuvdata_write_ms_of_unsplit_object(generic_input, tmp_path):
    input_dir, reference = generic_input
    out = convert(
        input_dir,
        tmp_path,
        telescope="generic",
        spw_layout="single",
        incomplete_groups="convert",
    )
    (ms,) = out.glob("*.ms")
    got, go = sorted_rows(ms)
    want, wo = sorted_rows(reference)
    assert len(got.time) == len(want.time)
    np.testing.assert_array_equal(got.time[go], want.time[wo])
    np.testing.assert_array_equal(got.ant1[go], want.ant1[wo])
    np.testing.assert_array_equal(got.ant2[go], want.ant2[wo])
    np.testing.assert_array_equal(got.uvw[go], want.uvw[wo])
    np.testing.assert_array_equal(got.data[go], want.data[wo])
    np.testing.assert_array_equal(got.spw_freqs[0], want.spw_freqs[0])
    with casa.table(f"{ms}/OBSERVATION") as tb:
        assert tb.getcell("TELESCOPE_NAME", 0) == "TEST_ARRAY"
    with casa.table(f"{ms}/FIELD") as tb:
        assert list(tb.getcol("NAME")) == ["target"]


def test_generic_mode_refuses_unphased_dsa110_files(two_groups, tmp_path):
    from dsa110ms.errors import InputFileError
    from dsa110ms.ms.template import write_template

    first = next(iter(discover(two_groups)))
    with pytest.raises(InputFileError, match="unprojected"):
        write_template(first.files[3], tmp_path / "g" / "template.ms", telescope="generic")


def fast_path(group, work: Path, **options) -> tuple[Path, list[str]]:
    """The group's template and parts, as the workflow's jobs write them."""
    from dsa110ms.ms.part import write_part
    from dsa110ms.ms.template import write_template

    keep = options.get("keep_autocorrelations", True)
    template = write_template(group.files[0], work / "template.ms", keep_autocorrelations=keep)
    parts = [
        str(write_part(group.files[sb], work / f"sb{sb:02d}.part", keep_autocorrelations=keep))
        for sb in group.subbands_ascending_frequency()
    ]
    return template, parts


@pytest.mark.parametrize(
    "options",
    [{}, {"keep_autocorrelations": False, "imaging_columns": "model_corrected"}],
    ids=["default", "cross_only_imaging_columns"],
)
def test_fast_path_equals_pyuvdata_parts_joined_by_casatasks_concat(two_groups, tmp_path, options):
    """The reference is the straightforward design: every subband written as an MS by pyuvdata's
    write_ms (plus dsa110ms.ms.layout), the 16 MSs joined by casatasks.concat. The fast path
    (template + NumPy parts + one-pass join) and the selectable concat method give the same MS:
    every main-table column and every subtable but HISTORY, cell by cell."""
    from dsa110ms.ms.join import assemble, concat_parts, concat_reference
    from dsa110ms.ms.template import write_pyuvdata_ms
    from dsa110ms.ms.validate import check_parts

    group = next(iter(discover(two_groups)))
    reference_parts = [
        str(write_pyuvdata_ms(group.files[sb], tmp_path / "ref" / f"sb{sb:02d}.ms", **options))
        for sb in group.subbands_ascending_frequency()
    ]
    concat_parts(reference_parts, tmp_path / "reference.ms")
    template, parts = fast_path(group, tmp_path / "scratch", **options)
    ordered = [s.path for s in check_parts(template, parts, {})]
    assert ordered == parts
    imaging = options.get("imaging_columns", "none")
    assemble(template, parts, tmp_path / "direct.ms", imaging_columns=imaging)
    assert_same_ms(tmp_path / "direct.ms", tmp_path / "reference.ms")
    concat_reference(
        template, parts, tmp_path / "concat.ms", tmp_path / "concat_inputs", imaging_columns=imaging
    )
    assert_same_ms(tmp_path / "concat.ms", tmp_path / "reference.ms")


def test_the_join_stops_if_casacore_reads_the_copied_bytes_otherwise(two_groups, tmp_path):
    """The byte copy relies on casacore's tile layout; a part's row read back otherwise (here:
    the DATA tile file overwritten after the copy) stops the join, naming the column."""
    from dsa110ms.errors import JoinError
    from dsa110ms.ms.join import BYTE_COPIED, _check_copied, _tiled_storage_files, assemble
    from dsa110ms.ms.part import open_part

    group = next(iter(discover(two_groups)))
    template, parts = fast_path(group, tmp_path / "scratch")
    joined = str(tmp_path / "direct.ms")
    assemble(template, parts, joined)
    columns = {c: a for c, a in BYTE_COPIED.items() if c != "CORRECTED_DATA"}
    _check_copied(joined, [open_part(p) for p in parts], columns)  # as the join left it
    ((path, _),) = _tiled_storage_files(joined, ["DATA"]).values()
    with open(path, "r+b") as f:
        f.write(b"\x7f" * 64)
    with pytest.raises(JoinError, match="DATA row 0 differs"):
        _check_copied(joined, [open_part(p) for p in parts], columns)


def test_an_aligned_group_is_copied_by_o_direct_without_casacores_zeros(tmp_path, monkeypatch):
    """A group whose parts fill whole pages (8 antennas x 16 integrations: 576 rows) is joined
    the full-size way: casacore's zero fill of the byte-copied columns goes to /dev/null (their
    tile files are empty when the copy starts) and the copy is O_DIRECT; every value of every
    byte-copied column is the parts'."""
    from casacore import tables

    from dsa110ms.ms import join
    from dsa110ms.ms.part import open_part
    from dsa110ms.simulate import SimulationSpec, simulate

    simulate(SimulationSpec(n_groups=1, n_integrations=16), tmp_path / "in")
    group = next(iter(discover(tmp_path / "in")))
    template, parts = fast_path(group, tmp_path / "scratch")
    sizes = {}
    copy = join._copy_into_storage

    def sizes_then_copy(files, opened, columns):
        sizes.update({column: Path(path).stat().st_size for column, path in files.items()})
        copy(files, opened, columns)

    monkeypatch.setattr(join, "_copy_into_storage", sizes_then_copy)
    joined = tmp_path / "direct.ms"
    join.assemble(template, parts, joined)
    assert sizes == dict.fromkeys(["DATA", "WEIGHT_SPECTRUM", "WEIGHT", "SIGMA"], 0)
    opened = [open_part(p) for p in parts]
    nrow = opened[0].manifest["rows"]
    assert nrow * 768 % 4096 == 0
    with tables.table(str(joined), ack=False) as t:
        for column, name in join.BYTE_COPIED.items():
            if column in t.colnames():
                got = t.getcol(column)
                for k, p in enumerate(opened):
                    assert np.array_equal(got[k * nrow : (k + 1) * nrow], p.array(name)), column


def test_a_part_array_of_the_wrong_shape_is_a_permanent_error_naming_it(two_groups, tmp_path):
    """A part whose byte-copied arrays hold a row fewer than its part.json says (each a valid
    .npy file) would shift every later SPW's rows, and one cut short would fail every attempt:
    both refused before anything is written, for good, naming the file."""
    from dsa110ms.errors import JoinError
    from dsa110ms.ms.part import open_part, save_aligned
    from dsa110ms.ms.validate import check_parts

    group = next(iter(discover(two_groups)))
    template, parts = fast_path(group, tmp_path / "scratch")
    for name in ("DATA", "WEIGHT_SPECTRUM", "WEIGHT", "SIGMA"):
        save_aligned(Path(parts[3]) / f"{name}.npy", open_part(parts[3]).array(name)[:-1].copy())
    with pytest.raises(JoinError, match=r"sb\d\d.hdf5: its part is damaged: .*DATA.npy: shape"):
        check_parts(template, parts, {})
    _, parts = fast_path(group, tmp_path / "again")
    with open(Path(parts[5]) / "WEIGHT_SPECTRUM.npy", "r+b") as f:  # cut short
        f.truncate(f.seek(0, 2) - 1000)
    with pytest.raises(JoinError, match=r"damaged: .*WEIGHT_SPECTRUM.npy: \d+ bytes, its header"):
        check_parts(template, parts, {})


def test_casacores_mmap_option_joins_the_same_ms(tmp_path):
    """With ``table.tsm.option: mmap`` in casacore's resource files (casacore then maps the tile
    files instead of writing them through a descriptor), the join writes casacore's zeros and
    copies over them: the same values, in a process of its own (casacore reads the files once)."""
    import subprocess
    import sys

    from dsa110ms.ms.join import casacore_tsm_option
    from dsa110ms.simulate import SimulationSpec, simulate

    casarc = tmp_path / "casarc"
    casarc.write_text("measures.*.directory: /nowhere\ntable.tsm.option: mmap\n")
    assert casacore_tsm_option({"CASARCFILES": str(casarc)}) == "mmap"
    assert casacore_tsm_option({"CASARCFILES": str(tmp_path / "none")}) == "cache"
    assert casacore_tsm_option({"HOME": str(tmp_path)}) == "cache"
    assert casacore_tsm_option({"HOME": str(tmp_path), "AIPSPATH": str(tmp_path)}) == "cache"
    (tmp_path / ".aipsrc").write_text("table.*: buffer\n")
    assert casacore_tsm_option({"HOME": str(tmp_path), "AIPSPATH": str(tmp_path)}) == "buffer"
    assert casacore_tsm_option({"HOME": str(tmp_path), "AIPSPATH": "/a linux site"}) == "unknown"
    simulate(SimulationSpec(n_groups=1, n_integrations=16), tmp_path / "in")
    code = f"""
import numpy as np
from pathlib import Path
from casacore import tables
from dsa110ms.groups import discover
from dsa110ms.ms import join
from dsa110ms.ms.part import open_part
from tests.test_fidelity import fast_path
group = next(iter(discover({str(tmp_path / "in")!r})))
template, parts = fast_path(group, Path({str(tmp_path / "scratch")!r}))
join.assemble(template, parts, {str(tmp_path / "mmap.ms")!r})
opened = [open_part(p) for p in parts]
n = opened[0].manifest["rows"]
with tables.table({str(tmp_path / "mmap.ms")!r}, ack=False) as t:
    for column in ("DATA", "WEIGHT_SPECTRUM", "WEIGHT", "SIGMA"):
        got = t.getcol(column)
        assert all(np.array_equal(got[k * n:(k + 1) * n], p.array(column))
                   for k, p in enumerate(opened)), column
print("same")
"""
    env = {**os.environ, "CASARCFILES": str(casarc)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert done.stdout.strip().endswith("same"), done.stderr[-2000:]
