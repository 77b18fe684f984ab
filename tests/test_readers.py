"""The workflow's Measurement Sets read by independent tools that share no code with this
project or pyuvdata: taql (casacore-tools), WSClean and AOFlagger, Debian's builds, installed
if missing by tests/readers/install.sh. Each tool runs on a copy of a converted MS (they write
into it; the session's ``converted`` MSs are shared), under its published name."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from casacore import tables

from dsa110ms.groups import discover
from dsa110ms.simulate import SimulationSpec

from .conftest import REPO
from .independent import source_icrs
from .test_workflow import middle_field

INSTALL = REPO / "tests" / "readers" / "install.sh"
N_SPW = 16
#: WSClean's image: pixel size and how far (in pixels) its peak may be from the true source.
PIXEL_ARCSEC = 15.0
PEAK_TOLERANCE_PX = 2


@pytest.fixture(scope="module")
def readers():
    """wsclean, aoflagger and taql on PATH; skipped, with the reason, where this machine can
    neither have nor install them (not root, no apt-get)."""
    check = subprocess.run([INSTALL, "check"], capture_output=True, text=True)
    if check.returncode:
        pytest.skip(f"cannot install the MS readers on this machine: {check.stdout.strip()}")
    install = subprocess.run([INSTALL, "install"], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr


@pytest.fixture
def ms(readers, converted, two_groups, tmp_path) -> Path:
    """A private copy of the first group's MS, under the name the workflow published it."""
    _, config, _ = converted
    group = next(iter(discover(two_groups)))
    source = Path(config["output_dir"]) / f"{group.id}.ms"
    return Path(shutil.copytree(source, tmp_path / source.name))


def run(cmd: list, cwd: Path) -> subprocess.CompletedProcess:
    """Run a reader; it must succeed (its whole output is in the failure message)."""
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.returncode == 0, f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout[-4000:]}"
    return proc


def taql(query: str) -> list[list[str]]:
    """Rows of a TaQL query's result as printed by the taql tool, tab-separated fields. taql
    exits 0 even when the query fails, so any output on stderr is a failure."""
    proc = subprocess.run(["taql", "-noph", "-nopr", query], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr, f"taql: {query}\n{proc.stderr}"
    return [line.split("\t") for line in proc.stdout.splitlines()]


def table(path: Path, sub: str = "") -> str:
    """A table's name quoted for TaQL (the path reaches taql's parser, never a shell)."""
    name = f"{path}/{sub}" if sub else str(path)
    assert "'" not in name
    return f"'{name}'"


def test_taql_reads_rows_spws_pointing_and_telescope(ms):
    """casacore's own query tool sees what the workflow meant to write: every row, 16 data
    descriptions with 16 distinctly named SPWs, the array pointing at each integration's
    meridian field (at the pointing declination, as astropy computes it), and the telescope
    name CASA locates the observatory by."""
    with tables.table(str(ms), ack=False) as tb:
        nrows = tb.nrows()
    assert taql(f"select gcount() from {table(ms)}") == [[str(nrows)]]

    ddids = taql(f"select distinct DATA_DESC_ID from {table(ms)}")
    assert sorted(int(d) for (d,) in ddids) == list(range(N_SPW))
    names = [n for (n,) in taql(f"select NAME from {table(ms, 'SPECTRAL_WINDOW')}")]
    assert names == [f"SPW{i}" for i in range(N_SPW)]

    assert taql(f"select TELESCOPE_NAME from {table(ms, 'OBSERVATION')}") == [["DSA_110"]]

    # floats printed with 17 significant digits: equal strings are equal doubles
    field_of_time = dict(taql(f"select distinct string(TIME, '%.6f'), FIELD_ID from {table(ms)}"))
    phase_dir = taql(
        "select string(PHASE_DIR[0,0], '%.17g'), string(PHASE_DIR[0,1], '%.17g') "
        f"from {table(ms, 'FIELD')}"
    )
    pointing = taql(
        "select string(TIME, '%.6f'), string(DIRECTION[0,0], '%.17g'), "
        f"string(DIRECTION[0,1], '%.17g') from {table(ms, 'POINTING')} where ANTENNA_ID == 0"
    )
    assert len(field_of_time) == len(phase_dir) == 3  # one field per integration
    assert sorted(t for t, *_ in pointing) == sorted(field_of_time)
    meridian = dataclasses.replace(
        SimulationSpec(), source_ha_offset_deg=0.0, source_dec_offset_deg=0.0
    )
    for time, ra, dec in pointing:
        assert [ra, dec] == phase_dir[int(field_of_time[time])], time
        expected = SkyCoord(*source_icrs(meridian, float(time)), unit="rad")
        direction = SkyCoord(float(ra), float(dec), unit="rad")
        assert direction.separation(expected).arcsec < 0.1, time


@pytest.mark.filterwarnings("ignore:'datfix' made the change:astropy.wcs.FITSFixedWarning")
def test_wsclean_images_the_source_at_its_true_position_in_every_field(ms, tmp_path):
    """WSClean's dirty image of each field (one integration each; the middle one is the
    field ``middle_field`` names), from DATA in all 16 SPWs, peaks within 2 pixels of the
    simulated source's true ICRS position with about its flux: WSClean's own reading of UVW,
    PHASE_DIR, the SPW frequencies and the data's sign convention agrees with the sky.
    WSClean 3.1 images an MS with several SPWs only after reordering it (``-reorder``), and
    one field at a time: ``-field all`` assumes all fields share one phase centre."""
    t_mid, middle, _, _ = middle_field(ms)
    spec = SimulationSpec()
    source = SkyCoord(*source_icrs(spec, t_mid), unit="rad")
    with tables.table(f"{ms}/SPECTRAL_WINDOW", ack=False) as tb:
        freqs = np.concatenate([tb.getcell("CHAN_FREQ", i) for i in range(tb.nrows())])
        widths = np.concatenate([tb.getcell("CHAN_WIDTH", i) for i in range(tb.nrows())])
    with tables.table(f"{ms}/FIELD", ack=False) as tb:
        n_fields = tb.nrows()
    assert n_fields == 3 and middle == 1

    for field in range(n_fields):
        prefix = tmp_path / f"field{field}"
        run(
            ["wsclean", "-size", "256", "256", "-scale", f"{PIXEL_ARCSEC}asec"]
            + ["-niter", "0", "-weight", "natural", "-data-column", "DATA"]
            + ["-field", field, "-reorder", "-temp-dir", tmp_path, "-j", "2"]
            + ["-name", prefix, ms],
            cwd=tmp_path,
        )
        with fits.open(f"{prefix}-image.fits") as hdul:
            header, image = hdul[0].header, hdul[0].data[0, 0]
        assert header["WSCFIELD"] == field
        # the image's one frequency plane covers every channel of every SPW
        assert header["CRVAL3"] == pytest.approx(freqs.mean(), rel=1e-9)
        assert header["CDELT3"] == pytest.approx(widths.sum(), rel=1e-9)
        iy, ix = np.unravel_index(np.argmax(image), image.shape)
        peak = WCS(header).celestial.pixel_to_world(ix, iy).icrs  # FITS: FK5 J2000
        offset = peak.separation(source).arcsec
        assert offset < PEAK_TOLERANCE_PX * PIXEL_ARCSEC, f"field {field}: {offset:.1f} arcsec"
        assert 0.7 * spec.source_flux_jy < image[iy, ix] < 1.1 * spec.source_flux_jy, field


def test_aoflagger_flags_an_injected_spike_and_little_else_and_leaves_data_alone(ms, tmp_path):
    """AOFlagger's default strategy runs through the MS (every SPW, field and baseline) and
    writes FLAG back in a form python-casacore still reads. One strong narrow-band spike is
    injected into the copy (one channel of one cross-correlation); AOFlagger must flag that
    very sample, so it maps DATA and FLAG to the same row, channel and polarization as casacore
    does. The rest is clean (a point source and noise): it flags little. It never changes DATA,
    and it records itself in the MS's HISTORY. (It sees each integration as its own sequence,
    since each is its own field: it cannot flag along time.)"""
    with tables.table(str(ms), readonly=False, ack=False) as tb:
        data = tb.getcol("DATA")
        cross = tb.getcol("ANTENNA1") != tb.getcol("ANTENNA2")
        row = np.flatnonzero(cross & (tb.getcol("DATA_DESC_ID") == N_SPW // 2))[10]
        data[row, 20, :] += 40 * SimulationSpec().source_flux_jy
        tb.putcol("DATA", data)
        assert not tb.getcol("FLAG").any()
    run(["aoflagger", ms], cwd=tmp_path)
    with tables.table(str(ms), ack=False) as tb:
        flags = tb.getcol("FLAG")
        np.testing.assert_array_equal(tb.getcol("DATA"), data)
    assert flags.shape == data.shape
    assert flags[row, 20].all()
    assert flags.mean() < 0.01, f"{flags.mean():.2%} flagged"
    with tables.table(f"{ms}/HISTORY", ack=False) as tb:
        assert "AOFlagger" in tb.getcol("APPLICATION")
