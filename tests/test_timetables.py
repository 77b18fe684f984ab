"""Time tables offline (dsa110ms.timetables): no process ever tries a download, data are
converted for any date the bundled tables cover, and refused in one line beyond them."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dsa110ms import timetables
from dsa110ms.errors import InputFileError
from dsa110ms.groups import discover

from .conftest import run_snakemake
from .test_robustness import small_config, small_groups

#: A sitecustomize for every Python process of a run (PYTHONPATH): any attempt to reach the
#: network raises NetworkForbidden, a BaseException that no ``except Exception`` (astropy's
#: download fallbacks) swallows, after writing the attempt to $NETWORK_ATTEMPTS.
SITECUSTOMIZE = textwrap.dedent(
    """
    import os, socket, traceback

    class NetworkForbidden(BaseException):
        pass

    def _forbid(what):
        with open(os.environ["NETWORK_ATTEMPTS"], "a") as f:
            f.write(f"{os.getpid()} {what}\\n{''.join(traceback.format_stack(limit=8))}\\n")
        raise NetworkForbidden(f"network use in a test that forbids it: {what}")

    _connect, _getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _forbid(f"connect {address}")
        return _connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in (None, "localhost", "127.0.0.1", "::1"):
            _forbid(f"getaddrinfo {host}")
        return _getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect
    socket.getaddrinfo = getaddrinfo
    """
)


@pytest.fixture
def offline_env(tmp_path) -> dict:
    """Environment whose Python processes fail loudly on any network use."""
    site = tmp_path / "offline-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    attempts = tmp_path / "network-attempts.txt"
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "NETWORK_ATTEMPTS": str(attempts)}


def python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )


def test_importing_the_package_configures_astropy_offline_without_importing_it():
    """Whichever is imported first, astropy's IERS module is configured offline; importing
    the package (as a part job does) imports no astropy."""
    after = python(
        """
        import sys, json
        import dsa110ms
        assert not [m for m in sys.modules if m.startswith("astropy")]
        from astropy.utils import iers, data
        print(json.dumps([iers.conf.auto_download, iers.conf.auto_max_age,
                          data.conf.allow_internet]))
        """
    )
    before = python(
        """
        import json
        from astropy.utils import iers, data
        import dsa110ms.run.partjob
        print(json.dumps([iers.conf.auto_download, iers.conf.auto_max_age,
                          data.conf.allow_internet]))
        """
    )
    for proc in (after, before):
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == [False, None, False]


def test_the_parsed_iers_table_is_cached_privately_and_gives_the_same_earth_rotation(tmp_path):
    """astropy's IERS-A table is parsed once and its columns kept in the user's cache (mode 0600
    in a 0700 directory, arrays and a digest, no pickle). A process reading the cache, one
    finding a damaged file (its digest differs: parsed, and cached again) and one whose cache
    directory others may write (not used at all) get the same UT1, polar motion and nutation
    corrections to the bit."""
    code = textwrap.dedent(
        """
        import dsa110ms, json, math
        from astropy.time import Time
        from astropy.utils import iers
        t = Time([2461000.5, 2461376.25, 2461700.75], format="jd")
        table = iers.earth_orientation_table.get()
        values = [list(t.ut1.jd2), *[list(p.value) for p in (*table.pm_xy(t), *table.dcip_xy(t))]]
        print(json.dumps([[None if math.isnan(v) else v for v in row] for row in values]))
        """
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}

    def values():
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    parsed = values()
    directory = tmp_path / "dsa110ms" / timetables.IERS_CACHE
    (cached,) = directory.glob("*.npz")
    assert cached.stat().st_mode & 0o777 == 0o600 and directory.stat().st_mode & 0o777 == 0o700
    assert values() == parsed  # from the cache
    damaged = bytearray(cached.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    cached.write_bytes(bytes(damaged))
    assert values() == parsed  # the digest differs: parsed, and cached again
    assert cached.read_bytes() != bytes(damaged)
    cached.unlink()
    directory.chmod(0o777)
    assert values() == parsed  # a directory others may write: not used
    assert list(directory.glob("*.npz*")) == []


def test_coverage_is_what_astropy_reads_from_the_bundled_tables():
    import astropy_iers_data
    from astropy.utils.iers import IERS_Auto, LeapSeconds

    tables = timetables.coverage()
    iers_a = IERS_Auto.open()
    assert tables.predicted_from_mjd == iers_a.meta["predictive_mjd"]
    assert tables.iers_a_end_mjd == iers_a["MJD"][-1].value
    # auto_open may answer with erfa's own copy (no mjd column) once a test has loaded it; the
    # expiry is the bundled file's either way, and the values are the bundled file's
    leap = LeapSeconds.auto_open()
    assert timetables.mjd_of(leap.expires.datetime.date()) == tables.leap_seconds_expire_mjd
    bundled = LeapSeconds.from_iers_leap_seconds(astropy_iers_data.IERS_LEAP_SECOND_FILE)
    assert tables.leap_seconds[-1] == (bundled["mjd"][-1], bundled["tai_utc"][-1])
    assert "make refresh-tables" in timetables.describe()


def jd(mjd: float) -> float:
    return mjd + timetables.JD_MINUS_MJD


def test_policy_silent_within_warning_beyond_predictions_refusal_beyond_the_grace(caplog):
    tables = timetables.coverage()
    caplog.set_level(logging.WARNING, logger="dsa110ms.timetables")
    timetables.check_times("within.hdf5", [jd(tables.leap_seconds_expire_mjd - 1)])
    assert caplog.records == []
    for mjd in (
        tables.leap_seconds_expire_mjd + 1,
        tables.iers_a_end_mjd + 1,
        tables.iers_a_end_mjd + timetables.GRACE_DAYS - 0.1,
    ):
        caplog.clear()
        timetables.check_times("late.hdf5", [jd(mjd - 0.01), jd(mjd)])
        (record,) = caplog.records
        assert record.getMessage().startswith("late.hdf5: observed ")
        assert "make refresh-tables" in record.getMessage()
    with pytest.raises(InputFileError) as refused:
        timetables.check_times("beyond.hdf5", [jd(tables.iers_a_end_mjd + 31)])
    message = str(refused.value)
    assert "\n" not in message and message.startswith("beyond.hdf5: observed ")
    assert timetables.date_of(tables.iers_a_end_mjd)[:10] in message
    assert "make refresh-tables" in message


def test_data_before_the_tables_start_are_refused_in_one_line():
    """The class: any time before astropy's IERS table (which astropy silently clamps to the
    table's first UT1-UTC), and any time no calendar can show, is refused naming the file, the
    time and the tables' start; the table's first day itself is converted."""
    tables = timetables.coverage()
    start = timetables.date_of(tables.iers_a_start_mjd)[:10]
    assert start == "1973-01-02"  # astropy's IERS_Auto: finals2000A.all's first day
    timetables.check_times("first-day.hdf5", [jd(tables.iers_a_start_mjd)])
    for mjd in (timetables.MJD_UNIX_EPOCH, tables.iers_a_start_mjd - 0.5, float("nan"), -1e9):
        with pytest.raises(InputFileError) as refused:
            timetables.check_times("early.hdf5", [jd(mjd), jd(tables.predicted_from_mjd)])
        message = str(refused.value)
        assert "\n" not in message and message.startswith("early.hdf5: observed ")
        assert f"before the Earth-rotation tables start ({start})" in message
        assert "UT1-UTC unknown" in message
    assert "measured from 1973-01-02" in timetables.describe()


def test_a_file_whose_clock_was_reset_to_1970_is_refused_when_read(tmp_path):
    """A real subband file whose Header/time_array is shifted to 1970 (a correlator whose
    clock reset): read_subband, which the template job uses, refuses it naming the file."""
    import h5py

    from dsa110ms.uvh5 import read_subband

    simulate_dir = tmp_path / "in"
    small_groups(simulate_dir, 1, n_integrations=2, n_antennas=3)
    path = str(sorted(simulate_dir.glob("*_sb00.hdf5"))[0])
    with h5py.File(path, "r+") as f:
        times = f["Header/time_array"]
        times[...] = times[...] - (times[0] - jd(timetables.MJD_UNIX_EPOCH))
    with pytest.raises(InputFileError) as refused:
        read_subband(path, read_data=False)
    message = str(refused.value)
    assert message.startswith(f"{path}: observed 1970-01-01T00:00:00 UTC, before the ")
    assert "(1973-01-02)" in message and "\n" not in message


def test_groups_of_now_and_a_year_ahead_convert_offline_and_later_ones_are_refused(
    tmp_path, scratch_root, offline_env
):
    """A real run, every process unable to reach the network: a group observed now and one a
    year after the tables' release convert (the latter with the warning); one beyond the grace
    is refused in one line naming its file."""
    tables = timetables.coverage()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0) - dt.timedelta(minutes=10)
    year_ahead = tables.release.replace(tzinfo=None) + dt.timedelta(days=365)
    beyond = dt.datetime.fromisoformat(
        timetables.date_of(tables.iers_a_end_mjd + timetables.GRACE_DAYS + 5)
    )
    d = tmp_path / "in"
    for start in (now, year_ahead, beyond):
        small_groups(d, 1, start=start.isoformat(), n_integrations=2, n_antennas=4)
    ids = sorted(g.id for g in discover(d, incomplete_groups="convert"))
    assert len(ids) == 3
    out = tmp_path / "out"
    proc = run_snakemake(
        tmp_path,
        "--cores",
        "2",
        config=small_config(d, out, scratch_root),
        check=False,
        prefix=["env", *(f"{k}={v}" for k, v in offline_env.items())],
    )
    attempts = Path(offline_env["NETWORK_ATTEMPTS"])
    assert not attempts.exists(), attempts.read_text()
    assert proc.returncode != 0, proc.stdout[-3000:]
    now_id, ahead_id, beyond_id = ids
    assert (out / f"{now_id}.ms").is_dir() and (out / f"{ahead_id}.ms").is_dir()
    assert not (out / f"{beyond_id}.ms").exists()
    assert "warning" not in (tmp_path / "logs" / now_id / "template.log").read_text().lower()
    ahead_log = (tmp_path / "logs" / ahead_id / "template.log").read_text()
    assert "converted, accurate enough since" in ahead_log and "make refresh-tables" in ahead_log
    casa_logs = "".join(p.read_text() for p in (tmp_path / "logs").rglob("*.log"))
    assert "SEVERE" not in casa_logs and "out-of-date" not in casa_logs
    rows = {i: [x for x in proc.stdout.splitlines() if x.strip().startswith(i)] for i in ids}
    # the warning is in the summary too, not only in the job's log
    assert "converted" in rows[ahead_id][0] and "warning:" in rows[ahead_id][0], rows
    assert "make refresh-tables" in rows[ahead_id][0], rows
    assert "warning" not in rows[now_id][0], rows
    (row,) = rows[beyond_id]
    template_source = discover(d, incomplete_groups="convert").groups[beyond_id].files[0]
    assert "FAILED" in row and template_source in row and "make refresh-tables" in row, row


CASA_TIMES = textwrap.dedent(
    """
    import json, sys
    from dsa110ms import casa
    ct = casa.tools()
    ct.logsink().setlogfile(sys.argv[1])
    me = ct.measures()
    me.doframe(me.observatory("OVRO_MMA"))
    out = {"measurespath": ct.ctsys.measurespath()}
    for day in sys.argv[2:]:
        e = me.epoch("utc", day)
        me.doframe(e)
        utc = e["m0"]["value"]
        out[day] = [(me.measure(e, s)["m0"]["value"] - utc) * 86400 for s in ("tai", "ut1")]
    print(json.dumps(out))
    """
)


def test_casa_measures_overlay_has_current_leap_seconds_and_earth_rotation(tmp_path):
    """CASA, through the package's measures overlay (made in a fresh cache), gives astropy's
    TAI-UTC and UT1-UTC for today and for the tables' last predicted month, and logs neither
    SEVERE "TAI_UTC seems out-of-date" nor "outside the range of the IERS table"."""
    from astropy.time import Time

    tables = timetables.coverage()
    days = [
        dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        timetables.date_of(tables.iers_a_end_mjd - 20)[:10],
    ]
    log = tmp_path / "casa.log"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("CASASITECONFIG", None)
    env.pop("DSA110MS_CASA_MEASURES_ROOT", None)
    proc = subprocess.run(
        [sys.executable, "-c", CASA_TIMES, str(log), *days],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["measurespath"].startswith(str(tmp_path / "cache" / "dsa110ms"))
    for day in days:
        t = Time(day, scale="utc")
        tai_utc, ut1_utc = found[day]
        assert abs(tai_utc - (t.tai.mjd - t.mjd) * 86400) < 1e-4
        assert abs(ut1_utc - t.delta_ut1_utc) < 1e-4, (day, ut1_utc, t.delta_ut1_utc)
    text = log.read_text() + proc.stderr
    assert "out-of-date" not in text and "outside the range" not in text, text


def test_the_measures_overlay_is_made_once_by_concurrent_processes(tmp_path):
    """Processes making the overlay at once: one overlay, no build left behind, each process
    gets the complete one."""
    env = {**os.environ, "DSA110MS_CASA_MEASURES_ROOT": str(tmp_path / "root")}
    code = "from dsa110ms import casa; print(casa.measures_overlay())"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    answers = {p.communicate()[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    (overlay,) = answers
    assert [p.name for p in (tmp_path / "root").iterdir()] == [Path(overlay).name]
    assert (Path(overlay) / "geodetic" / "TAI_UTC" / "table.dat").is_file()
    assert (Path(overlay) / "geodetic" / "Observatories" / "table.dat").is_file()
    assert (Path(overlay) / "geodetic" / "IGRF").is_symlink()
    assert f"measurespath = {overlay!r}" in (Path(overlay) / "casasiteconfig.py").read_text()
