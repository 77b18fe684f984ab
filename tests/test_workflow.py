"""The whole workflow, run for real: Snakemake CLI, pyuvdata write_ms, casatasks concat, tmpfs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from dsa110ms import casa
from dsa110ms.groups import discover
from dsa110ms.run.scratch import ScratchLayout
from dsa110ms.simulate import SimulationSpec, simulate

from .conftest import hold_lock, leftovers, run_snakemake, staging_left, visible
from .independent import dft_flux, mirrored, ms_uvw_reference, source_icrs
from .msdata import expected_ms_data, read_ms, read_uvh5_raw


def test_two_groups_convert_and_leave_no_scratch(converted, two_groups):
    work, config, proc = converted
    out = Path(config["output_dir"])
    ids = [g.id for g in discover(two_groups)]
    assert visible(out) == [f"{g}.ms" for g in ids] and staging_left(out) == []
    assert leftovers(Path(config["scratch_root"])) == []
    assert "removed and verified gone" in proc.stdout


def test_ms_data_equal_input_in_right_spw_and_channel(converted, two_groups):
    work, config, _ = converted
    for group in discover(two_groups):
        ms = read_ms(Path(config["output_dir"]) / f"{group.id}.ms")
        assert len(ms.spw_freqs) == 16
        lows = [f[0] for f in ms.spw_freqs]
        assert lows == sorted(lows), "SPWs ascend in frequency"
        for spw, sb in enumerate(group.subbands_ascending_frequency()):
            raw = read_uvh5_raw(group.files[sb])
            np.testing.assert_allclose(ms.spw_freqs[spw], raw.freqs[::-1], rtol=0, atol=1e-3)
            rows = np.flatnonzero(ms.spw == spw)
            assert len(rows) == len(raw.vis)
            data, flags, nsamples = expected_ms_data(ms, rows, raw)
            np.testing.assert_array_equal(ms.data[rows], data)
            np.testing.assert_array_equal(ms.flag[rows], flags)
            np.testing.assert_array_equal(ms.weight_spectrum[rows], nsamples)


def test_casa_listobs_and_msmetadata_read_it(converted, two_groups):
    _, config, _ = converted
    group = next(iter(discover(two_groups)))
    ms = str(Path(config["output_dir"]) / f"{group.id}.ms")
    summary = casa.tasks().listobs(vis=ms, listfile="")
    assert summary["nfields"] == 3
    msmd = casa.tools().msmetadata()
    msmd.open(ms)
    try:
        assert msmd.nspw() == 16 and msmd.nantennas() == 117
    finally:
        msmd.done()


def test_second_run_has_nothing_to_do(converted):
    work, config, _ = converted
    proc = run_snakemake(work, "-n", config=config)
    assert "Nothing to be done" in proc.stdout


def test_dry_run_lists_jobs_and_creates_no_scratch(two_groups, tmp_path, scratch_root):
    config = {"input_dir": two_groups, "output_dir": tmp_path / "out", "scratch_root": scratch_root}
    proc = run_snakemake(tmp_path, "-n", config=config)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    assert counts == {
        "ms_template": "2",
        "ms_part": "32",
        "concat": "2",
        "run_report": "1",
        "all": "1",
        "total": "38",
    }
    for flag in ("--dag", "--rulegraph", "--summary"):
        proc = run_snakemake(tmp_path, flag, config=config)
        assert proc.stdout.strip()
    assert not scratch_root.exists()
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def two_subband_group(tmp_path_factory):
    """A group of just the highest and lowest subband (converted with incomplete_groups=convert)."""
    d = tmp_path_factory.mktemp("two_subbands")
    simulate(SimulationSpec(subbands=(0, 15), start="2026-02-01T00:00:00"), d)
    (group,) = list(discover(d, incomplete_groups="convert"))
    return d, group.id


def test_concat_lock_failure_is_retried_and_dead_scratch_swept(
    two_subband_group, tmp_path, scratch_root
):
    """Also: onstart removes scratch of a dead run, never that of a live one."""
    input_dir, group = two_subband_group
    live = hold_lock(scratch_root, tmp_path / "live-run")
    dead = hold_lock(scratch_root, tmp_path / "dead-run")
    dead.kill()
    dead.wait()
    live_dir = ScratchLayout.for_workdir(scratch_root, tmp_path / "live-run").instance_dir
    dead_dir = ScratchLayout.for_workdir(scratch_root, tmp_path / "dead-run").instance_dir
    config = {
        "input_dir": input_dir,
        "output_dir": tmp_path / "out",
        "scratch_root": scratch_root,
        "incomplete_groups": "convert",
        "keep_autocorrelations": False,
        "faults": {"concat": {"*": {"1": "read_write"}}},
    }
    proc = run_snakemake(tmp_path, "--cores", "2", config=config)
    assert "cannot be opened for read/write" in proc.stdout and "injected fault" in proc.stdout
    (ms,) = (tmp_path / "out").glob("*.ms")
    assert ms.name == f"{group}.ms"
    cols = read_ms(ms)
    assert len(cols.spw_freqs) == 2
    assert not np.any(cols.ant1 == cols.ant2), "keep_autocorrelations: false drops autos"
    assert "attempt" in proc.stdout.lower() or "restart" in proc.stdout.lower()
    assert not dead_dir.exists()
    assert (live_dir / "g" / "sb00.part").is_dir(), "a live run's scratch is never swept"
    live.kill()
    live.wait()
    shutil.rmtree(live_dir)


def test_permanent_failure_leaves_nothing(two_subband_group, tmp_path, scratch_root):
    input_dir, group = two_subband_group
    config = {
        "input_dir": input_dir,
        "output_dir": tmp_path / "out",
        "scratch_root": scratch_root,
        "incomplete_groups": "convert",
        "concat_retries": 1,
        "faults": {"concat": {"*": {"1": "bytes_read", "2": "errno18"}}},
    }
    proc = run_snakemake(tmp_path, "--cores", "2", config=config, check=False)
    assert proc.returncode != 0
    assert visible(tmp_path / "out") == [] and staging_left(tmp_path / "out") == []
    log = (tmp_path / "logs" / group / "concat.log").read_text()
    assert "ERROR" in log and "injected fault" in log
    # onerror removed this run's scratch (verified by the scratch_root fixture too)
    assert "run failed" in proc.stdout and "removed and verified gone" in proc.stdout
    # the summary table names the group, its retries and the reason, with where the logs are
    row = re.search(rf"^  {group}  FAILED .*$", proc.stdout, flags=re.M)
    assert row, proc.stdout[-3000:]
    assert re.match(rf"^  {group}  FAILED\s+[\d.]+\s+1  join: group {group}: attempt 2", row[0])
    assert row[0].endswith(f"; logs in logs/{group}")
    assert "[dsa110ms] run summary: 1 FAILED" in proc.stdout
    # the run report is written anyway, with the failed group and its reason
    table = (tmp_path / "report" / "groups.html").read_text()
    assert f"<tr><td>{group}</td>" in table and "FAILED: join: group" in table


def test_bad_config_is_one_line(tmp_path, two_groups):
    proc = run_snakemake(tmp_path, "-n", config={"tolerance_s": "abc"}, check=False)
    assert proc.returncode != 0
    assert "dsa110ms: error: config key tolerance_s: 'abc' is not of type 'number'" in proc.stdout
    assert "Traceback" not in proc.stdout


def test_published_uvw_match_independent_computation(converted, two_groups):
    _, config, _ = converted
    for group in discover(two_groups):
        uvw, expected, _ = ms_uvw_reference(Path(config["output_dir"]) / f"{group.id}.ms")
        assert np.abs(uvw - expected).max() < 1e-3


def middle_field(ms):
    """(TIME of the middle integration, its field's ICRS ra/dec)."""
    with casa.table(ms) as tb:
        times, fields = tb.getcol("TIME"), tb.getcol("FIELD_ID")
    t_mid = np.unique(times)[len(np.unique(times)) // 2]
    f = fields[times == t_mid][0]
    with casa.table(f"{ms}/FIELD") as tb:
        ra0, dec0 = tb.getcol("PHASE_DIR")[:, 0, f]
    return t_mid, f, ra0, dec0


def test_point_source_is_at_its_true_position_not_mirrored(converted, two_groups):
    """A sign or UVW error moves the source: DFT at the true vs mirrored position, and a CASA
    tclean image whose peak must be at the true position."""
    _, config, _ = converted
    group = next(iter(discover(two_groups)))
    ms = Path(config["output_dir"]) / f"{group.id}.ms"
    t_mid, f, ra0, dec0 = middle_field(ms)
    ra, dec = source_icrs(SimulationSpec(), t_mid)
    flux = SimulationSpec().source_flux_jy
    assert dft_flux(ms, ra, dec) == pytest.approx(flux, rel=0.01)
    assert abs(dft_flux(ms, *mirrored(ra0, dec0, ra, dec))) < 0.1 * flux

    image = Path(config["output_dir"]).parent / "snapshot"
    casa.tasks().tclean(
        vis=str(ms),
        imagename=str(image),
        field=str(f),
        imsize=[256, 256],
        cell="15arcsec",
        niter=0,
        weighting="natural",
    )
    ia = casa.tools().image()
    ia.open(f"{image}.image")
    try:
        pixels = ia.getchunk()[:, :, 0, 0]
        peak = np.unravel_index(np.argmax(pixels), pixels.shape)
        peak_ra, peak_dec = ia.coordsys().toworld([*peak, 0, 0], "n")["numeric"][:2]
    finally:
        ia.close()
    offset = np.hypot((peak_ra - ra) * np.cos(dec), peak_dec - dec)
    assert np.degrees(offset) * 3600 < 30, f"peak {np.degrees(offset) * 3600:.1f} arcsec off"


def test_pointing_is_the_meridian_at_the_pointing_dec_and_the_site_is_known(converted, two_groups):
    """POINTING: every antenna at every integration points at that integration's meridian field
    (the pointing declination); CASA finds the observatory at the DSA-110 site."""
    from pyuvdata.utils import XYZ_from_LatLonAlt

    from dsa110ms import telescope as tel

    _, config, _ = converted
    group = next(iter(discover(two_groups)))
    ms = Path(config["output_dir"]) / f"{group.id}.ms"
    with casa.table(ms) as tb:
        field_of_time = dict(zip(tb.getcol("TIME"), tb.getcol("FIELD_ID"), strict=True))
    with casa.table(f"{ms}/FIELD") as tb:
        phase_dir = tb.getcol("PHASE_DIR")[:, 0, :].T  # (nfield, 2)
    with casa.table(f"{ms}/POINTING") as tb:
        assert tb.getcolkeyword("DIRECTION", "MEASINFO")["Ref"] == "ICRS"
        direction = tb.getcol("DIRECTION")[:, 0, :].T  # casatools: (2, 1, nrow)
        times, antennas = tb.getcol("TIME"), tb.getcol("ANTENNA_ID")
        assert tb.getcol("TRACKING").all()
    assert len(times) == len(field_of_time) * (antennas.max() + 1)
    np.testing.assert_array_equal(direction, phase_dir[[field_of_time[t] for t in times]])
    msmd = casa.tools().msmetadata()
    msmd.open(str(ms))
    try:
        dec = msmd.pointingdirection(0)["antenna1"]["pointingdirection"]["m1"]["value"]
        site = msmd.observatoryposition()
    finally:
        msmd.done()
    assert abs(np.degrees(dec) - SimulationSpec().pointing_dec_deg) < 0.5  # ICRS vs of date
    me = casa.tools().measures()
    position = me.getvalue(me.measure(site, "ITRF"))
    lon, lat, radius = (position[k]["value"] for k in ("m0", "m1", "m2"))
    got = radius * np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    reference = XYZ_from_LatLonAlt(
        np.radians(tel.LATITUDE_DEG), np.radians(tel.LONGITUDE_DEG), tel.ALTITUDE_M
    )
    distance = np.linalg.norm(got - reference)
    assert distance < 10, f"CASA's observatory is {distance:.0f} m from DSA-110's reference"


def test_mosaic_with_the_shipped_beam_images_the_source_in_place_pb_corrected(
    converted, two_groups, tmp_path
):
    """tclean(gridder="mosaic", usepointing=True) with dsa110ms.beam's table: the peak at the
    source's true position, a primary beam of 1 at the pointing falling to the Airy value of a
    4.65 m dish at the source, and the corrected image = image / pb there."""
    from dsa110ms.beam import write_vptable

    _, config, _ = converted
    group = next(iter(discover(two_groups)))
    ms = Path(config["output_dir"]) / f"{group.id}.ms"
    t_mid, _, ra0, dec0 = middle_field(ms)
    ra, dec = source_icrs(SimulationSpec(), t_mid)
    image = tmp_path / "mosaic"
    casa.tasks().tclean(
        vis=str(ms),
        imagename=str(image),
        gridder="mosaic",
        vptable=str(write_vptable(tmp_path / "dsa110.vptable")),
        usepointing=True,
        phasecenter=f"ICRS {ra0}rad {dec0}rad",
        imsize=[256, 256],
        cell="10arcsec",
        specmode="mfs",
        weighting="natural",
        niter=100,
        pbcor=True,
    )
    ia = casa.tools().image()
    values = {}
    for kind in ("image", "pb", "image.pbcor"):
        ia.open(f"{image}.{kind}")
        try:
            values[kind] = ia.getchunk()[:, :, 0, 0]
            coords = ia.coordsys()
        finally:
            ia.close()
    peak = np.unravel_index(np.argmax(values["image"]), values["image"].shape)
    peak_ra, peak_dec = coords.toworld([*peak, 0, 0], "n")["numeric"][:2]
    offset_arcsec = np.degrees(np.hypot((peak_ra - ra) * np.cos(dec), peak_dec - dec)) * 3600
    assert offset_arcsec < 10, f"peak {offset_arcsec:.1f} arcsec from the truth (10 arcsec cells)"
    assert values["pb"][128, 128] == pytest.approx(1.0, abs=0.01)
    assert 0.90 < values["pb"][peak] < 0.97  # Airy of 4.65 m at ~0.4 deg, 1.3-1.5 GHz
    assert values["image.pbcor"][peak] == pytest.approx(values["image"][peak] / values["pb"][peak])


def test_a_second_run_of_a_working_directory_is_refused_whatever_its_scratch_root(
    two_subband_group, tmp_path, scratch_root
):
    """Two runs of one working directory share Snakemake's metadata, the logs and the metrics:
    with another scratch_root, the second is refused in one line naming the live run, and
    leaves nothing in its scratch root."""
    import subprocess
    import sys
    import textwrap

    from dsa110ms.run.hooks import WORKDIR_LOCK

    from .test_robustness import small_config

    code = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from dsa110ms.run import scratch
        os.chdir({str(tmp_path)!r})
        Path(".dsa110ms").mkdir(exist_ok=True)
        lock = scratch.OwnerLock.try_acquire(Path({str(WORKDIR_LOCK)!r}), create=True)
        lock.describe_owner()
        print("locked", flush=True)
        time.sleep(600)
        """
    )
    live = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == "locked"
        input_dir, _ = two_subband_group
        config = small_config(input_dir, tmp_path / "out", scratch_root)
        proc = run_snakemake(tmp_path, "--cores", "2", config=config, check=False)
    finally:
        live.kill()
        live.wait()
    assert proc.returncode != 0
    line = f"working directory {tmp_path} is in use by a live run (pid {live.pid} on"
    assert line in proc.stdout, proc.stdout[-3000:]
    assert not list((tmp_path / "out").glob("*.ms"))
    assert leftovers(scratch_root) == []


def test_a_join_holds_no_core_and_joins_run_one_per_two_cores(tmp_path, scratch_root):
    """Issue 21, item 7: rule concat has ``threads: 0`` and one unit of the ``joins`` resource,
    which onstart limits to one per two cores (at least one). On one core, the first group's
    join (held 4 s by a test fault) runs while the second group's parts run; the second
    group's join, ready meanwhile, waits until the first has ended."""
    from dsa110ms.observe.metrics import read_events

    from .test_robustness import small_config, small_groups

    first, second = small_groups(tmp_path / "in", 2, subbands=(0, 1, 2, 3), n_antennas=4)
    config = small_config(tmp_path / "in", tmp_path / "out", scratch_root)
    proc = run_snakemake(
        tmp_path, "--cores", "1", config={**config, "faults": {"concat_delay_s": 4}}
    )
    # threads: 0 sets OMP_NUM_THREADS=0 and its like; the join uses 1 (libgomp warned of 0)
    assert "OMP_NUM_THREADS" not in proc.stdout, proc.stdout[-3000:]
    events = read_events(tmp_path / "logs" / "metrics", since=0)

    def interval(kind: str, group: str) -> list[tuple[float, float]]:
        return [
            (e["ts"] - e["seconds"], e["ts"])
            for e in events
            if e["kind"] == kind and e.get("group") == group and "seconds" in e
        ]

    (join_1,), (join_2,) = interval("join", first), interval("join", second)
    beside = [p for p in interval("part", second) if join_1[0] < p[1] < join_1[1]]
    assert beside, (join_1, interval("part", second))
    assert join_2[0] >= join_1[1] - 0.05, (join_1, join_2)
    assert visible(tmp_path / "out") == [f"{g}.ms" for g in (first, second)]

    # a limit below 1 would be no limit (Snakemake caps each join's request at it): refused
    work = tmp_path / "zero"
    work.mkdir()
    zero = {**config, "output_dir": tmp_path / "out-zero"}
    proc = run_snakemake(work, "--cores", "2", "--resources", "joins=0", config=zero, check=False)
    assert proc.returncode != 0
    assert "--resources joins=0: the joins that may run at once must be at least 1" in proc.stdout
    assert "Traceback" not in proc.stdout and visible(tmp_path / "out-zero") == []
