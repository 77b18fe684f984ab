"""``phase_center``: one FIELD per MS (group_meridian, fixed), visibilities rotated by the part
jobs, against pyuvdata's own rotation, casatasks.phaseshift of the per_integration MS, the
simulated sky, and WSClean imaging all fields at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from casacore import tables

from dsa110ms import casa
from dsa110ms.errors import ConfigError
from dsa110ms.groups import discover
from dsa110ms.ms.part import open_part, write_part
from dsa110ms.ms.template import write_pyuvdata_ms
from dsa110ms.phasecenter import FIELD_NAMES, PhaseCenter, write_plan
from dsa110ms.settings import Settings
from dsa110ms.simulate import SimulationSpec

from .conftest import convert, run_snakemake
from .independent import dft_flux, source_icrs
from .test_readers import readers, run  # noqa: F401 - readers: a fixture
from .test_workflow import middle_field

C = 299792458.0
GROUP_MERIDIAN = PhaseCenter("group_meridian")


@pytest.fixture(scope="module")
def first_group(two_groups):
    return next(iter(discover(two_groups)))


def rows_in_order(ms: Path, columns) -> dict[str, np.ndarray]:
    """Columns of an MS's main table (python-casacore's row-major shapes), rows sorted by time,
    data description and baseline: phaseshift writes them in another order."""
    with tables.table(str(ms), ack=False) as tb:
        keys = [tb.getcol(c) for c in ("ANTENNA2", "ANTENNA1", "DATA_DESC_ID", "TIME")]
        order = np.lexsort(keys)
        return {c: tb.getcol(c)[order] for c in columns}


def channel_freqs(ms: Path, ddid: np.ndarray) -> np.ndarray:
    """Each row's channel frequencies (Hz), rows x channels."""
    with tables.table(f"{ms}/SPECTRAL_WINDOW", ack=False) as tb:
        freqs = np.stack([tb.getcell("CHAN_FREQ", i) for i in range(tb.nrows())])
    with tables.table(f"{ms}/DATA_DESCRIPTION", ack=False) as tb:
        spw = tb.getcol("SPECTRAL_WINDOW_ID")
    return freqs[spw[ddid]]


def one_field(ms: Path) -> tuple[str, np.ndarray]:
    with tables.table(f"{ms}/FIELD", ack=False) as tb:
        assert tb.nrows() == 1
        return str(tb.getcell("NAME", 0)), tb.getcell("PHASE_DIR", 0)[0]


def test_a_part_is_rotated_as_pyuvdata_rotates_the_whole_subband(first_group, tmp_path):
    """The part job's rotation (the group's plan, per antenna, complex64) equals pyuvdata's
    ``_apply_w_proj`` of the same subband to the same FIELD (complex128, per baseline), and the
    plan's centre is the FIELD pyuvdata writes."""
    path = first_group.files[3]
    plan = write_plan(path, tmp_path / "plan.npz", GROUP_MERIDIAN)
    part = open_part(write_part(path, tmp_path / "g" / "sb03.part", phase_plan=plan))
    reference = write_pyuvdata_ms(path, tmp_path / "reference.ms", phase_center=GROUP_MERIDIAN)
    with casa.table(str(reference)) as tb:
        want = np.transpose(tb.getcol("DATA"))
    got = part.array("DATA")
    worst = float(np.max(np.abs(got - want) / np.abs(want)))
    print(f"part rotation vs pyuvdata: max relative difference {worst:.2e}")
    assert worst < 1e-6
    name, direction = one_field(reference)
    assert name == FIELD_NAMES["group_meridian"] == part.manifest["phase_center"]["name"]
    np.testing.assert_allclose(part.manifest["phase_center"]["direction"], direction, atol=1e-15)


@pytest.fixture(scope="module")
def per_integration_single(two_groups, first_group, tmp_path_factory) -> Path:
    out = convert(
        two_groups,
        tmp_path_factory.mktemp("pi_single"),
        spw_layout="single",
        groups=[first_group.id],
    )
    return out / f"{first_group.id}.ms"


@pytest.fixture(scope="module", params=["per_subband", "single"])
def layouts(request, two_groups, first_group, converted, per_integration_single, tmp_path_factory):
    """(spw_layout, the group_meridian MS, the per_integration MS) of the first group."""
    layout = request.param
    out = convert(
        two_groups,
        tmp_path_factory.mktemp(f"gm_{layout}"),
        spw_layout=layout,
        phase_center="group_meridian",
        groups=[first_group.id],
    )
    if layout == "single":
        reference = per_integration_single
    else:
        reference = Path(converted[1]["output_dir"]) / f"{first_group.id}.ms"
    return layout, out / f"{first_group.id}.ms", reference


def test_group_meridian_equals_casa_phaseshift_of_the_per_integration_ms(layouts, tmp_path):
    """The acceptance: casatasks.phaseshift of the per_integration MS to our FIELD gives the same
    UVW within 1 mm and the same DATA. CASA's astrometry (its UVW for the new centre) and
    erfa's (pyuvdata's, ours) differ by a few mas, which is a w difference of up to ~0.05 mm on
    these 1.4 km baselines and a phase of 2 pi dw / lambda; DATA agree within 1e-5 once that
    is taken out: the rotation is the one CASA applies, to our UVW."""
    layout, ours, per_integration = layouts
    name, (ra, dec) = one_field(ours)
    assert name == "group_meridian"
    shifted = tmp_path / "phaseshifted.ms"
    casa.tasks().phaseshift(
        vis=str(per_integration), outputvis=str(shifted), phasecenter=f"ICRS {ra}rad {dec}rad"
    )
    columns = ("TIME", "ANTENNA1", "ANTENNA2", "DATA_DESC_ID", "UVW", "DATA", "FLAG")
    a, b = rows_in_order(ours, columns), rows_in_order(shifted, columns)
    for c in ("TIME", "ANTENNA1", "ANTENNA2", "DATA_DESC_ID", "FLAG"):
        np.testing.assert_array_equal(a[c], b[c], err_msg=c)
    uvw_difference = np.abs(a["UVW"] - b["UVW"]).max()
    magnitude = np.abs(b["DATA"])
    data_relative = np.max(np.abs(a["DATA"] - b["DATA"]) / magnitude)
    freqs = channel_freqs(ours, a["DATA_DESC_ID"])
    casa_w_phase = np.exp(-2j * np.pi * (a["UVW"][:, 2] - b["UVW"][:, 2])[:, None] * freqs / C)
    consistent = np.max(np.abs(a["DATA"] - b["DATA"] * casa_w_phase[:, :, None]) / magnitude)
    print(
        f"{layout}: UVW max difference {uvw_difference * 1e3:.4f} mm; DATA max relative "
        f"difference {data_relative:.2e} ({consistent:.2e} after CASA's w difference)"
    )
    assert uvw_difference < 1e-3
    assert consistent < 1e-5
    # what remains is that phase alone: at most 2 pi dw f / c
    worst_phase = 2 * np.pi * uvw_difference * freqs.max() / C
    assert data_relative < worst_phase + 1e-5


def test_fixed_phase_center_at_the_source_puts_its_flux_in_every_visibility(
    two_groups, first_group, converted, tmp_path, scratch_root
):
    """phase_center: fixed at the simulated source: its 5 Jy is in every cross-correlation,
    phase ~0, with no further phasing. A later run with the default phase centre keeps the MS,
    converts nothing, and says which option differs, in its log and its summary."""
    reference = Path(converted[1]["output_dir"]) / f"{first_group.id}.ms"
    t_mid, *_ = middle_field(reference)
    spec = SimulationSpec()
    ra, dec = source_icrs(spec, t_mid)
    out = convert(
        two_groups,
        tmp_path,
        phase_center="fixed",
        phase_center_ra_deg=float(np.degrees(ra)),
        phase_center_dec_deg=float(np.degrees(dec)),
        groups=[first_group.id],
    )
    ms = out / f"{first_group.id}.ms"
    name, direction = one_field(ms)
    assert name == FIELD_NAMES["fixed"]
    np.testing.assert_allclose(direction, [ra, dec], atol=1e-12)
    rows = rows_in_order(ms, ("ANTENNA1", "ANTENNA2", "DATA"))
    cross = rows["DATA"][rows["ANTENNA1"] != rows["ANTENNA2"]][..., 0]
    print(f"fixed at the source: mean {cross.mean():.4f} Jy, DFT {dft_flux(ms, ra, dec):.4f} Jy")
    assert abs(cross.mean() - spec.source_flux_jy) < 0.02 * spec.source_flux_jy
    assert np.abs(np.angle(cross)).max() < 0.05  # noise only
    assert dft_flux(ms, ra, dec) == pytest.approx(cross.real.mean(), rel=1e-6)

    config = {"input_dir": two_groups, "output_dir": out, "scratch_root": scratch_root}
    again = run_snakemake(tmp_path, "--cores", "2", config={**config, "groups": [first_group.id]})
    assert "made with other options (phase_center {'kind': 'fixed'" in again.stdout
    assert "this run's default); kept" in again.stdout
    assert "rule ms_part" not in again.stdout and "Nothing to be done" in again.stdout
    assert one_field(ms)[0] == FIELD_NAMES["fixed"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"phase_center": "fixed"}, "fixed needs phase_center_ra_deg and phase_center_dec_deg"),
        (
            {"phase_center": "fixed", "phase_center_ra_deg": 361, "phase_center_dec_deg": 0},
            "phase_center_ra_deg: 361 is greater than or equal to the maximum of 360",
        ),
        (
            {"phase_center": "fixed", "phase_center_ra_deg": 10, "phase_center_dec_deg": -91},
            "phase_center_dec_deg: -91 is less than the minimum of -90",
        ),
        ({"phase_center_dec_deg": 10}, "used only with phase_center: fixed"),
        ({"phase_center": "group_meridian", "telescope": "generic"}, "is for telescope: dsa110"),
    ],
)
def test_phase_center_settings_out_of_range_are_one_line(config, message):
    with pytest.raises(ConfigError, match=message) as err:
        Settings.from_config(config)
    assert "\n" not in str(err.value)


def test_the_file_that_differs_is_named_even_when_it_is_the_plans_source(first_group, tmp_path):
    """A plan rotates only files that share its source's geometry; the others are written
    unrotated, and the join names the file that differs from the rest of the group: here the
    plan's (and the template's) own source, whose antenna 4 moved 1 m."""
    import h5py

    from dsa110ms.errors import JoinError
    from dsa110ms.ms.template import write_template
    from dsa110ms.ms.validate import check_parts

    files = [Path(shutil.copy(first_group.files[sb], tmp_path)) for sb in (0, 1, 2)]
    with h5py.File(files[0], "r+") as f:
        f["Header/antenna_positions"][3, 0] += 1.0
    plan = write_plan(str(files[0]), tmp_path / "plan.npz", GROUP_MERIDIAN)
    template = write_template(files[0], tmp_path / "g" / "template.ms", phase_center=GROUP_MERIDIAN)
    parts = [write_part(f, tmp_path / "g" / f"{f.stem}.part", phase_plan=plan) for f in files]
    assert [open_part(p).manifest["phase_center"] is None for p in parts] == [False, True, True]
    with pytest.raises(JoinError) as err:
        check_parts(template, [str(p) for p in parts], {})
    message = str(err.value)
    assert f"{files[0]} (the template's source) differs from the 2 other files" in message
    assert "antenna_positions of antenna 4" in message
    assert "\n" not in message


@pytest.mark.usefixtures("readers")
@pytest.mark.parametrize("layouts", ["per_subband"], indirect=True)  # one layout is enough
def test_wsclean_images_all_fields_of_a_group_meridian_ms_as_the_phaseshifted_reference(
    layouts, tmp_path
):
    """WSClean ``-field all`` on the group_meridian MS puts the simulated source within 1 arcsec
    of where it puts it in the phaseshifted per_integration MS, at >= 99 % of that peak (on the
    per_integration MS itself it assumes the first field's centre for all: a wrong image)."""
    _, ours, per_integration = layouts
    _, (ra, dec) = one_field(ours)
    shifted = tmp_path / "phaseshifted.ms"
    casa.tasks().phaseshift(
        vis=str(per_integration), outputvis=str(shifted), phasecenter=f"ICRS {ra}rad {dec}rad"
    )
    peaks = {}
    for label, ms in (("ours", ours), ("phaseshifted", shifted)):
        copy = Path(shutil.copytree(ms, tmp_path / label / ms.name))
        peaks[label] = wsclean_peak(copy, tmp_path / label / "image")
    (ra_a, dec_a, peak_a), (ra_b, dec_b, peak_b) = peaks["ours"], peaks["phaseshifted"]
    from astropy.coordinates import SkyCoord

    offset = SkyCoord(ra_a, dec_a, unit="deg").separation(SkyCoord(ra_b, dec_b, unit="deg"))
    print(f"WSClean -field all: {offset.arcsec:.3f} arcsec apart, peak ratio {peak_a / peak_b:.4f}")
    assert offset.arcsec < 1.0
    assert peak_a >= 0.99 * peak_b


def wsclean_peak(ms: Path, prefix: Path) -> tuple[float, float, float]:
    """WSClean's dirty image of every field and SPW at once: the peak's (RA, Dec) (deg, ICRS,
    sub-pixel by a parabola through the brightest pixel and its neighbours) and value (Jy)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    run(
        ["wsclean", "-size", "512", "512", "-scale", "8asec", "-niter", "0"]
        + ["-weight", "natural", "-data-column", "DATA", "-field", "all", "-reorder"]
        + ["-temp-dir", prefix.parent, "-j", "2", "-name", prefix, ms],
        cwd=prefix.parent,
    )
    with fits.open(f"{prefix}-image.fits") as hdul:
        header, image = hdul[0].header, hdul[0].data[0, 0]
    iy, ix = np.unravel_index(np.argmax(image), image.shape)

    def vertex(left, centre, right) -> float:
        return 0.5 * (left - right) / (left - 2 * centre + right)

    dy = vertex(image[iy - 1, ix], image[iy, ix], image[iy + 1, ix])
    dx = vertex(image[iy, ix - 1], image[iy, ix], image[iy, ix + 1])
    peak = WCS(header).celestial.pixel_to_world(ix + dx, iy + dy).icrs
    return peak.ra.deg, peak.dec.deg, float(image[iy, ix])


def test_a_site_may_name_the_telescope_ovro_lwa_but_never_ovro_mma(first_group, tmp_path):
    """ms_telescope_name: OVRO-LWA is written as asked (a CASA without the package's measures);
    OVRO_MMA, which CASA places at the centre of the Earth, is refused in one line."""
    with pytest.raises(ConfigError, match="ms_telescope_name") as err:
        Settings.from_config({"ms_telescope_name": "OVRO_MMA"})
    assert "\n" not in str(err.value)
    ms = write_pyuvdata_ms(
        first_group.files[0], tmp_path / "lwa.ms", freq_chans=[0], ms_telescope_name="OVRO-LWA"
    )
    with tables.table(f"{ms}/OBSERVATION", ack=False) as tb:
        assert tb.getcell("TELESCOPE_NAME", 0) == "OVRO-LWA"


def test_a_rerun_after_a_kill_with_other_settings_reuses_nothing_made_with_the_old_ones(
    two_groups, first_group, tmp_path, scratch_root
):
    """A run killed outright (SIGKILL) while its parts are written leaves the template, the
    phase plan and parts of its settings in scratch; a rerun with another phase centre makes
    its own (their names carry the settings' digest) and publishes the MS it was asked for,
    under a stamp that tells the truth."""
    import json
    import os
    import signal
    import subprocess
    import time

    from .conftest import snakemake_command

    config = {
        "input_dir": two_groups,
        "output_dir": tmp_path / "out",
        "scratch_root": scratch_root,
        "groups": [first_group.id],
    }
    cmd = snakemake_command(
        tmp_path, "--cores", "2", config={**config, "phase_center": "group_meridian"}
    )
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while not list(scratch_root.glob("*/*/*.part")) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    left = {p.name for p in scratch_root.glob("*/*/*")}
    assert any(n.startswith("template.") for n in left), left  # what the rerun must not take
    fixed = {"phase_center": "fixed", "phase_center_ra_deg": 100, "phase_center_dec_deg": 20}
    run_snakemake(tmp_path, "--cores", "2", config={**config, **fixed})
    ms = tmp_path / "out" / f"{first_group.id}.ms"
    name, direction = one_field(ms)
    assert name == FIELD_NAMES["fixed"]
    np.testing.assert_allclose(np.degrees(direction), [100, 20], atol=1e-9)
    stamp = json.loads((ms / "dsa110ms_published.json").read_text())
    assert stamp["options"]["phase_center"] == {"kind": "fixed", "ra_deg": 100.0, "dec_deg": 20.0}
