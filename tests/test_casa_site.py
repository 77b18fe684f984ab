"""CASA with the package's measures overlay knows the observatory our MSs name (DSA_110): listobs,
msmetadata, cvel2, tclean/exportfits and casacore's taql place it at DSA-110's array reference,
as astropy does; the overlay's standalone site config and ~/.casarc line work for CASA outside
the package. CASA runs in a child process (under stock casadata it crashes on these MSs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import HADec, SkyCoord, SpectralCoord
from astropy.time import Time
from pyuvdata.utils import XYZ_from_LatLonAlt
from scipy.special import j1

from dsa110ms import casa
from dsa110ms import telescope as tel
from dsa110ms.groups import discover
from dsa110ms.simulate import SimulationSpec

from .independent import SITE, source_icrs
from .test_readers import readers  # noqa: F401 - the fixture: taql installed
from .test_readers import table as taql_table

REFERENCE = XYZ_from_LatLonAlt(
    np.radians(tel.LATITUDE_DEG), np.radians(tel.LONGITUDE_DEG), tel.ALTITUDE_M
)
ARCSEC_PER_RAD = 180 / np.pi * 3600

#: In a child process under the package's site config: listobs, msmetadata, cvel2 (LSRK) of one
#: integration's field, tclean (standard gridder, the package's beam table, pbcor) and
#: exportfits; prints what the tests check as JSON.
CASA_CALLS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from dsa110ms import casa
    from dsa110ms.beam import write_vptable

    ms, out, field, ra, dec = sys.argv[1], sys.argv[2], int(sys.argv[3]), *map(float, sys.argv[4:])
    casa.log_to(f"{out}/casa.log")
    ct, tasks = casa.tools(), casa.tasks()
    found = {"measurespath": ct.ctsys.measurespath()}
    tasks.listobs(vis=ms, listfile=f"{out}/listobs.txt")
    msmd = ct.msmetadata()
    msmd.open(ms)
    try:
        site, found["observatories"] = msmd.observatoryposition(), msmd.observatorynames()
    finally:
        msmd.done()
    me = ct.measures()
    itrf = me.getvalue(me.measure(site, "ITRF"))
    lon, lat, r = (itrf[k]["value"] for k in ("m0", "m1", "m2"))
    found["observatory_xyz"] = [r * np.cos(lat) * np.cos(lon), r * np.cos(lat) * np.sin(lon),
                                r * np.sin(lat)]
    tasks.cvel2(vis=ms, outputvis=f"{out}/lsrk.ms", spw="0", field=str(field), outframe="LSRK",
                mode="channel")
    with casa.table(f"{out}/lsrk.ms/SPECTRAL_WINDOW") as tb:
        found["lsrk_frame"] = int(tb.getcell("MEAS_FREQ_REF", 0))
        found["lsrk_hz"] = tb.getcell("CHAN_FREQ", 0).tolist()
    with casa.table(f"{ms}/FIELD") as tb:
        ra0, dec0 = tb.getcol("PHASE_DIR")[:, 0, field]
    tasks.tclean(vis=ms, imagename=f"{out}/img", field=str(field), gridder="standard",
                 vptable=str(write_vptable(f"{out}/dsa110.vptable")),
                 phasecenter=f"ICRS {ra0}rad {dec0}rad", imsize=[160, 160], cell="20arcsec",
                 specmode="mfs", weighting="natural", niter=0, pbcor=True)
    tasks.exportfits(imagename=f"{out}/img.image", fitsimage=f"{out}/img.fits")
    ia = ct.image()
    ia.open(f"{out}/img.pb")
    try:
        cs = ia.coordsys()
        pixel = np.round(cs.topixel([ra, dec, 1, cs.referencevalue()["numeric"][3]])["numeric"])
        world = cs.toworld(pixel.tolist(), "n")["numeric"]
        found["pb"] = float(ia.getchunk()[int(pixel[0]), int(pixel[1]), 0, 0])
        found["pb_pixel_radec"] = [float(world[0]), float(world[1])]
        found["image_hz"] = float(world[3])
        found["phase_center"] = [float(ra0), float(dec0)]
    finally:
        ia.close()
    print(json.dumps(found))
    """
)


@pytest.fixture(scope="module")
def ms(converted, two_groups) -> Path:
    """The first group's MS of the session's conversion (read only)."""
    _, config, _ = converted
    return Path(config["output_dir"]) / f"{next(iter(discover(two_groups))).id}.ms"


def middle_integration(ms: Path) -> tuple[float, int]:
    """(TIME, FIELD_ID) of the middle integration: one field (meridian per integration)."""
    with casa.table(ms) as tb:
        times, fields = tb.getcol("TIME"), tb.getcol("FIELD_ID")
    t = np.unique(times)[len(np.unique(times)) // 2]
    return float(t), int(fields[times == t][0])


@pytest.fixture(scope="module")
def casa_run(ms, tmp_path_factory):
    """What CASA found (JSON of :data:`CASA_CALLS`), its log and the directory of its outputs."""
    out = tmp_path_factory.mktemp("casa_site")
    t, field = middle_integration(ms)
    ra, dec = source_icrs(SimulationSpec(), t)
    env = {**os.environ, "CASASITECONFIG": str(casa.SITE_CONFIG.resolve())}
    proc = subprocess.run(
        [sys.executable, "-c", CASA_CALLS, str(ms), str(out), str(field), str(ra), str(dec)],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"CASA ({proc.returncode}):\n{proc.stderr[-4000:]}"
    found = json.loads(proc.stdout.splitlines()[-1])
    found.update(time=t, field=field, source=(ra, dec))
    return found, (out / "casa.log").read_text(), out


def test_listobs_runs_on_a_dsa_110_ms_without_severe(casa_run):
    found, log, out = casa_run
    assert "SEVERE" not in log, [line for line in log.splitlines() if "SEVERE" in line]
    assert "not recognized" not in log
    listing = (out / "listobs.txt").read_text()
    assert "DSA_110" in listing, listing[:2000]
    assert found["measurespath"] == str(casa.measures_overlay())


def test_msmetadata_places_the_observatory_at_the_dsa_110_reference(casa_run):
    found, _, _ = casa_run
    assert found["observatories"] == [tel.MS_TELESCOPE_NAME]
    distance = np.linalg.norm(np.array(found["observatory_xyz"]) - REFERENCE)
    print(f"msmetadata observatory {distance:.3f} m from the DSA-110 reference")
    assert distance < 10


def test_cvel2_lsrk_shift_is_astropys(casa_run, ms):
    """cvel2's LSRK frequency of each channel of one integration's field = astropy's LSRK
    frequency of the MS's TOPO channel (field direction, the integration's time, DSA-110)."""
    found, _, _ = casa_run
    assert found["lsrk_frame"] == 1  # LSRK
    with casa.table(f"{ms}/SPECTRAL_WINDOW") as tb:
        topo = tb.getcell("CHAN_FREQ", 0)
        assert tb.getcell("MEAS_FREQ_REF", 0) == 5  # TOPO
    with casa.table(f"{ms}/FIELD") as tb:
        ra, dec = tb.getcol("PHASE_DIR")[:, 0, found["field"]]
    obstime = Time(found["time"] / 86400, format="mjd", scale="utc")
    with warnings.catch_warnings():  # no distance or velocity for the field: a direction
        warnings.simplefilter("ignore")
        spectral = SpectralCoord(
            topo * u.Hz,
            observer=SITE.get_itrs(obstime),
            target=SkyCoord(ra * u.rad, dec * u.rad, frame="icrs"),
        )
        lsrk = spectral.with_observer_stationary_relative_to("lsrk").to_value(u.Hz)
    shift = np.array(found["lsrk_hz"]) - topo
    difference_khz = np.abs(shift - (lsrk - topo)).max() / 1e3
    print(f"cvel2 LSRK shift {shift[0] / 1e3:.3f} kHz, astropy's +- {difference_khz:.5f} kHz")
    assert difference_khz < 0.01


def test_exported_fits_image_has_the_dsa_110_observatory(casa_run):
    from astropy.io import fits

    _, _, out = casa_run
    header = fits.getheader(out / "img.fits")
    obsgeo = np.array([header[f"OBSGEO-{axis}"] for axis in "XYZ"])
    distance = np.linalg.norm(obsgeo - REFERENCE)
    print(f"FITS OBSGEO {distance:.3f} m from the DSA-110 reference")
    assert header["TELESCOP"] == tel.MS_TELESCOPE_NAME
    assert distance < 10


def test_standard_gridder_pb_with_the_vptable_is_the_airy_pattern_of_a_465_m_dish(casa_run):
    """tclean (standard gridder) with dsa110ms.beam's table: the pb at the source is the power
    pattern of a 4.65 m unblocked dish, (2 J1(x)/x)^2 with x = pi D sin(r) / lambda."""
    found, log, _ = casa_run
    assert "does not have a beam" not in log and "Loading Voltage Pattern" in log
    ra0, dec0 = found["phase_center"]
    position = SkyCoord(*found["pb_pixel_radec"], unit="rad")
    offset = position.separation(SkyCoord(ra0, dec0, unit="rad")).rad
    source_offset = SkyCoord(*found["source"], unit="rad").separation(position).arcsec
    assert source_offset < 15  # the source's pixel (20 arcsec cells)
    x = np.pi * tel.DISH_DIAMETER_M * np.sin(offset) * found["image_hz"] / 299792458.0
    airy = (2 * j1(x) / x) ** 2
    print(
        f"pb {found['pb']:.5f} at {np.degrees(offset):.3f} deg, {found['image_hz'] / 1e9:.4f} "
        f"GHz; Airy {airy:.5f}; ratio {found['pb'] / airy:.5f}"
    )
    assert 0.5 < airy < 0.98  # the source is well off the pointing: the test tells
    assert found["pb"] / airy == pytest.approx(1, abs=0.01)


def test_taql_mscal_with_the_casarc_line_gives_astropys_elevation(readers, ms, tmp_path):  # noqa: F811
    """Debian's taql, pointed at the overlay by the ``casarc`` line in ~/.casarc, finds the
    observatory DSA_110: mscal.azel() of the array centre is astropy's elevation of each
    integration's field. casacore's AZEL is about the geocentric vertical (AZELGEO the geodetic
    one): astropy's apparent hour angle and declination are turned by the site's geocentric
    latitude."""
    line = subprocess.run(
        [sys.executable, "-m", "dsa110ms.casa", "casarc"], capture_output=True, text=True
    )
    assert line.returncode == 0, line.stderr
    home = tmp_path / "home"
    home.mkdir()
    (home / ".casarc").write_text(line.stdout)
    query = (
        "select string(TIME, '%.6f'), FIELD_ID, string(mscal.azel()[1], '%.12f') "
        f"from {taql_table(ms)} where ANTENNA1 == 0 && ANTENNA2 == 0 && DATA_DESC_ID == 0"
    )
    proc = subprocess.run(
        ["taql", "-noph", "-nopr", query],
        env={**os.environ, "HOME": str(home)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and not proc.stderr, f"taql: {query}\n{proc.stderr}"
    lines = [line for line in proc.stdout.splitlines() if line and not line.startswith("Unit:")]
    rows = [line.split("\t") for line in lines]
    assert len(rows) == 3, proc.stdout
    with casa.table(f"{ms}/FIELD") as tb:
        phase_dir = tb.getcol("PHASE_DIR")[:, 0, :].T
    x, y, z = SITE.to_value(u.m)
    geocentric_lat = np.arctan2(z, np.hypot(x, y))
    differences = []
    for time_s, field, elevation in rows:
        ra, dec = phase_dir[int(field)]
        frame = HADec(obstime=Time(float(time_s) / 86400, format="mjd", scale="utc"), location=SITE)
        apparent = SkyCoord(ra * u.rad, dec * u.rad, frame="icrs").transform_to(frame)
        h, d = apparent.ha.rad, apparent.dec.rad
        expected = np.arcsin(
            np.sin(geocentric_lat) * np.sin(d) + np.cos(geocentric_lat) * np.cos(d) * np.cos(h)
        )
        differences.append((float(elevation) - expected) * ARCSEC_PER_RAD)
    print(f"taql mscal elevation - astropy's: {np.round(differences, 3)} arcsec")
    assert np.abs(differences).max() < 1


def test_the_commands_print_a_site_config_and_a_casarc_line_casa_uses(tmp_path):
    """``python -m dsa110ms.casa siteconfig|casarc``; a fresh CASA Python given only
    CASASITECONFIG (no dsa110ms imported) knows the observatory DSA_110."""

    def command(*args, env=os.environ):
        proc = subprocess.run(
            [sys.executable, "-m", "dsa110ms.casa", *args], env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        assert len(proc.stdout.splitlines()) == 1, proc.stdout
        return proc.stdout.strip()

    site_config = Path(command("siteconfig"))
    overlay = casa.measures_overlay()
    assert site_config.is_absolute() and site_config.is_file() and site_config.parent == overlay
    key, _, directory = command("casarc").partition(": ")
    assert key == "measures.directory" and Path(directory) == overlay

    code = textwrap.dedent(
        """
        import json, sys
        import casatools
        me = casatools.measures()
        site = me.observatory("DSA_110")
        itrf = me.getvalue(me.measure(site, "ITRF"))
        print(json.dumps({"refer": site["refer"], "measurespath": casatools.ctsys.measurespath(),
                          "itrf": [itrf[k]["value"] for k in ("m0", "m1", "m2")],
                          "dsa110ms": any(m.startswith("dsa110ms") for m in sys.modules)}))
        """
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CASASITECONFIG": str(site_config)}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.splitlines()[-1])
    assert found["measurespath"] == str(overlay) and not found["dsa110ms"]
    lon, lat, r = found["itrf"]
    xyz = r * np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    assert found["refer"] == "WGS84" and np.linalg.norm(xyz - REFERENCE) < 10
    assert not (home / ".casa").exists()

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    env = {**os.environ, "DSA110MS_CASA_MEASURES_ROOT": str(blocked / "root")}
    proc = subprocess.run(
        [sys.executable, "-m", "dsa110ms.casa", "siteconfig"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and not proc.stdout
    assert proc.stderr.startswith("dsa110ms: error: CASA measures overlay cannot be made in")
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


def test_the_run_log_names_casas_site_config_and_measures_once(converted):
    _, _, proc = converted
    lines = [line for line in proc.stdout.splitlines() if "CASA: site config" in line]
    assert lines == [
        f"dsa110ms INFO: CASA: site config {casa.SITE_CONFIG.resolve()}, "
        f"measures {casa.measures_overlay()}"
    ], lines


def test_what_is_at_the_overlays_path_is_checked_before_use(tmp_path):
    """An overlay is used only as the package made it: an empty directory, a symlink to a good
    overlay or an overlay that lost a table it writes is refused in one line naming it and the
    fix; nothing there is removed."""
    from dsa110ms.errors import CasaDataError

    environ = {"DSA110MS_CASA_MEASURES_ROOT": str(tmp_path / "good")}
    good = casa.make_overlay(environ)
    bad_root = tmp_path / "bad"
    bad = bad_root / good.name
    bad_environ = {"DSA110MS_CASA_MEASURES_ROOT": str(bad_root)}
    bad.mkdir(parents=True)
    with pytest.raises(CasaDataError, match="not an overlay made by dsa110ms; move it away"):
        casa.make_overlay(bad_environ)
    bad.rmdir()
    bad.symlink_to(good)
    with pytest.raises(CasaDataError, match="a symlink"):
        casa.make_overlay(bad_environ)
    shutil.rmtree(good / "geodetic" / "Observatories")
    with pytest.raises(CasaDataError, match=r"tables missing \(geodetic/Observatories\)") as err:
        casa.make_overlay(environ)
    assert "\n" not in str(err.value) and (good / "geodetic" / "TAI_UTC").is_dir()
