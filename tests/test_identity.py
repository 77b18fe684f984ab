"""A group's identity comes from its data (issue 19 A.2-A.4, B.3-B.5): discovery on real tiny
HDF5 files written by the simulator, whose names and data start can be set apart."""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dsa110ms.errors import DiscoveryError
from dsa110ms.groups import TIMESTAMP_PATTERN, discover, format_timestamp, scan
from dsa110ms.inventory import HeaderError, Inventory, read_first_integration
from dsa110ms.simulate import SimulationSpec, correlator_antenna_order, write_subband_file

from .conftest import REPO, WITHOUT_DAC_OVERRIDE

T0 = dt.datetime(2026, 11, 30, 3, 0, 0)
SPEC = SimulationSpec(n_antennas=2, n_integrations=1, n_channels=1)
ORDER = correlator_antenna_order(SPEC.n_antennas, SPEC.seed)
ALL = range(16)


def write(d: Path, named: dt.datetime | str, subband: int, data_start: dt.datetime) -> Path:
    """One real subband file named ``named`` whose data start at ``data_start``."""
    name = named if isinstance(named, str) else format_timestamp(named)
    d.mkdir(parents=True, exist_ok=True)
    return write_subband_file(d / f"{name}_sb{subband:02d}.hdf5", SPEC, subband, data_start, ORDER)


def write_group(d: Path, start: dt.datetime, subbands=ALL, jitter=(1, 2, 3), shift_s: int = 0):
    """A group whose data start at ``start``, its names ``shift_s`` + 1..3 s later (no name is
    the data's own second)."""
    for sb in subbands:
        named = start + dt.timedelta(seconds=shift_s + jitter[sb % len(jitter)])
        write(d, named, sb, start)


def test_a_late_sb00_named_otherwise_joins_its_observation(tmp_path):
    """B.3: sb01-sb15 arrive (converted under `convert` as they are); sb00 comes later, named
    03:00:02. The id was sb00's name, so one observation became two MSs (03:00:01 with 15
    SPWs, 03:00:02 with 16). It is the data's start, whatever the names."""
    write_group(tmp_path, T0, subbands=range(1, 16))
    (before,) = discover(tmp_path, incomplete_groups="convert")
    write(tmp_path, T0 + dt.timedelta(seconds=2), 0, T0)
    (after,) = discover(tmp_path)
    assert before.id == after.id == "2026-11-30T03:00:00"
    assert len(before.files) == 15 and len(after.files) == 16
    # and whatever file is re-sent later: a second sb00 under `latest` keeps the id
    write(tmp_path, T0 + dt.timedelta(seconds=55), 0, T0)
    (resent,) = discover(tmp_path, duplicate_subbands="latest")
    assert resent.id == after.id and resent.files[0].endswith("03:00:55_sb00.hdf5")


def test_files_of_one_observation_named_in_two_clusters_are_one_group(tmp_path):
    """sb00 named 50 s before the data, the others 55-57 s after: two clusters by name (over
    60 s apart), one observation by data: one group of three files (it was two)."""
    write(tmp_path, T0 - dt.timedelta(seconds=50), 0, T0)
    write_group(tmp_path, T0, subbands=(1, 15), jitter=(55, 57))
    (g,) = discover(tmp_path, incomplete_groups="convert")
    assert g.id == "2026-11-30T03:00:00" and sorted(g.files) == [0, 1, 15]


def test_files_named_far_from_their_data_skip_their_group_naming_both_times(tmp_path):
    """A.2: files named 03:00:02 hold data from 03:05:09; the group was published as
    03:00:02.ms without a word. One line names the files and both times; the next
    observation, named right, converts."""
    later = T0 + dt.timedelta(seconds=309)
    write_group(tmp_path, later, subbands=(0, 1, 15), shift_s=-308)  # named 03:00:02-04
    write_group(tmp_path, later + dt.timedelta(seconds=309), subbands=(0, 1, 15))
    m = discover(tmp_path, incomplete_groups="convert")
    assert [g.id for g in m] == ["2026-11-30T03:10:18"]
    assert m.skipped == [
        "group 2026-11-30T03:05:09: not converted: 2026-11-30T03:00:02_sb00.hdf5 is named "
        "2026-11-30T03:00:02 but its data start at 2026-11-30T03:05:09 (more than tolerance_s=60 "
        "s apart): mislabelled; 2026-11-30T03:00:03_sb01.hdf5 is named 2026-11-30T03:00:03 but "
        "its data start at 2026-11-30T03:05:09 (more than tolerance_s=60 s apart): mislabelled; "
        "2026-11-30T03:00:02_sb15.hdf5 is named 2026-11-30T03:00:02 but its data start at "
        "2026-11-30T03:05:09 (more than tolerance_s=60 s apart): mislabelled. Rename a "
        "mislabelled file to the time its data start; move a file of another observation out of "
        "input_dir"
    ]
    # the window selects by the data's time; the names' group is reported if they are in it
    assert len(discover(tmp_path, end_time="2026-11-30T03:01:00")) == 0


def test_a_file_of_another_observation_skips_its_group(tmp_path):
    """B.3's converse: an sb03 named with the group but holding data from half a second later
    (not the bit-identical time_array[0] of DSA-110's subbands): the group is not converted
    (telescope dsa110); telescope generic only asks data within tolerance_s."""
    write_group(tmp_path, T0, subbands=(0, 1, 15))
    write(tmp_path, T0 + dt.timedelta(seconds=1), 3, T0 + dt.timedelta(seconds=0.5))
    m = discover(tmp_path, incomplete_groups="convert")
    assert len(m) == 0
    (line,) = m.skipped
    assert line.startswith(
        "group 2026-11-30T03:00:00: not converted: 2026-11-30T03:00:01_sb03.hdf5's first "
        "integration (time_array[0] = 2461374.62508"
    )
    assert "2026-11-30T03:00:00.500) is not sb00's (" in line
    assert "DSA-110's subbands of one observation share it exactly" in line
    (g,) = discover(tmp_path, incomplete_groups="convert", telescope="generic")
    assert g.id == "2026-11-30T03:00:00" and sorted(g.files) == [0, 1, 3, 15]


def test_a_first_time_that_is_no_date_skips_its_group(tmp_path):
    """time_array[0] = NaN, or a year beyond 9999: one line, no OverflowError."""
    import h5py

    write_group(tmp_path, T0, subbands=(0, 15))
    (sb15,) = tmp_path.glob("*_sb15.hdf5")
    for value in (float("nan"), 1e300, 5373485.0, 0.0):  # 5373485.0: year 10000
        with h5py.File(sb15, "r+") as f:
            f["Header/time_array"][0] = value
        (line,) = discover(tmp_path, incomplete_groups="convert").skipped
        assert f"{sb15.name} holds time_array[0] = {value!r}, which is no date" in line


def test_leap_second_names_are_accepted(tmp_path):
    """A.3: 2016-12-31T23:59:60_sbNN.hdf5 was refused as "not named YYYY-MM-DDTHH:MM:SS". A
    leap second's name is taken as 23:59:59 + 1 s; the data decide the id. A :60 anywhere
    else is not a time, and is said so."""
    after_leap = dt.datetime(2017, 1, 1)  # the data of the leap second, in POSIX time
    for sb in (0, 15):
        write(tmp_path, "2016-12-31T23:59:60", sb, after_leap)
    (tmp_path / "2016-12-31T12:30:60_sb01.hdf5").write_bytes(b"")
    m = discover(tmp_path, incomplete_groups="convert")
    (g,) = m
    assert g.id == "2017-01-01T00:00:00"
    assert g.files[0].endswith("2016-12-31T23:59:60_sb00.hdf5")
    assert [s.detail for s in m.skipped] == [
        "named 2016-12-31T12:30:60, which is not a UTC time (second must be in 0..59; a leap "
        "second is 23:59:60), ignored; rename it or move it out of input_dir"
    ]
    # the part job's wildcard takes the name as it is
    assert re.fullmatch(TIMESTAMP_PATTERN, "2016-12-31T23:59:60")


@pytest.mark.parametrize(
    "start, end",
    [
        ("0001-01-01T00:00:00", "9999-12-31T23:59:59"),
        ("0001-01-01T00:00:00", None),
        (None, "9999-12-31T23:59:59"),
    ],
)
def test_extreme_window_bounds_mean_unbounded(tmp_path, start, end):
    """A.4: end_time=9999-12-31T23:59:59 or start_time=0001-01-01T00:00:00 raised
    OverflowError (a bound +- tolerance leaves datetime's range; here, as in the trial, when a
    file belongs to no group)."""
    from dsa110ms.settings import Settings

    settings = Settings.from_config({"start_time": start, "end_time": end})
    write_group(tmp_path, T0, subbands=(0, 15))
    write(tmp_path, T0 + dt.timedelta(seconds=600), 7, T0 + dt.timedelta(seconds=600))
    m = discover(tmp_path, start_time=settings.start_time, end_time=settings.end_time)
    assert len(m) == 0 and [os.path.basename(s.subject) for s in m.skipped] == [
        "2026-11-30T03:10:00_sb07.hdf5",  # no sb00 near it
        "group 2026-11-30T03:00:00",  # incomplete
    ]
    m = discover(tmp_path, start_time="9999-12-31T23:59:59", incomplete_groups="convert")
    assert len(m) == 0 and "widen the window" in m.empty_reason


def test_only_regular_files_are_opened(tmp_path):
    """B.4: a FIFO named as a subband file hung the run forever. A FIFO, a socket and a
    directory named so each get one line and are never opened; their group is reported as
    any incomplete group. A FIFO in place of a cached file is not opened either."""
    write_group(tmp_path, T0, subbands=(0, 15))
    os.mkfifo(tmp_path / "2026-11-30T03:00:01_sb01.hdf5")
    (tmp_path / "2026-11-30T03:00:01_sb02.hdf5").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "2026-11-30T03:00:01_sb03.hdf5"))
    found: list = []
    worker = threading.Thread(target=lambda: found.append(discover(tmp_path)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert found, "discovery blocked"
    (m,) = found
    assert [s for s in m.skipped if "regular" in s] == [
        f"{tmp_path}/2026-11-30T03:00:01_sb01.hdf5: a FIFO, not a regular file: never read, "
        "ignored; move it out of input_dir",
        f"{tmp_path}/2026-11-30T03:00:01_sb02.hdf5: a directory, not a regular file: never read, "
        "ignored; move it out of input_dir",
        f"{tmp_path}/2026-11-30T03:00:01_sb03.hdf5: a socket, not a regular file: never read, "
        "ignored; move it out of input_dir",
    ]
    assert len(m) == 0 and "missing sb01, sb02, sb03" in m.skipped[-1]
    sock.close()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(HeaderError, match="not a regular file"):
        read_first_integration(str(fifo))


def test_subband_numbers_and_times_are_ascii_digits(tmp_path):
    """B.5: `_sb٠٥` was taken as sb05 (Python's \\d matches every script's digits), in
    discovery and in the Snakemake wildcards."""
    write_group(tmp_path, T0, subbands=(0, 15))
    good = next(tmp_path.glob("*_sb15.hdf5"))
    for name in ("2026-11-30T03:00:01_sb٠٥.hdf5", "٢٠٢٦-11-30T03:00:01_sb05.hdf5"):
        os.link(good, tmp_path / name)
    files, notes = scan(tmp_path)
    assert sorted(f.subband for f in files) == [0, 15]
    assert [n.detail for n in notes] == [
        "not named YYYY-MM-DDTHH:MM:SS_sbNN.hdf5 (ASCII digits), ignored; rename it or move it "
        "out of input_dir"
    ] * 2
    rules = (REPO / "rules" / "common.smk").read_text()
    (subband,) = re.findall(r'subband=r"([^"]+)"', rules)
    assert re.fullmatch(subband, "05") and not re.fullmatch(subband, "٠٥")
    assert not re.fullmatch(TIMESTAMP_PATTERN, "٢٠٢٦-11-30T03:00:01")


def test_unreadable_input_dir_is_one_line(tmp_path):
    """B.6: an input_dir without read permission printed a PermissionError traceback."""
    (tmp_path / "in").mkdir(mode=0)
    code = (
        "import sys\nfrom dsa110ms.groups import discover\nfrom dsa110ms.errors import "
        "DiscoveryError\ntry:\n    discover(sys.argv[1])\nexcept DiscoveryError as e:\n"
        "    print(e)"
    )
    proc = subprocess.run(
        [*WITHOUT_DAC_OVERRIDE, sys.executable, "-c", code, str(tmp_path / "in")],
        capture_output=True,
        text=True,
    )
    assert proc.stderr == "" and proc.stdout == (
        f"{tmp_path / 'in'}: input directory cannot be read (Permission denied); check input_dir "
        "and its permissions\n"
    )
    with pytest.raises(DiscoveryError, match="does not exist"):
        discover(tmp_path / "gone")


def test_unreadable_headers_leave_the_id_to_the_others_and_the_job_names_them(tmp_path):
    """A file that is not HDF5 does not stop discovery: the others give the id, and its part
    job names it (tests/test_robustness.py). If no file can be read, the names do."""
    write_group(tmp_path / "a", T0, subbands=(0, 1, 15))
    (sb00,) = (tmp_path / "a").glob("*_sb00.hdf5")
    sb00.write_text("not HDF5\n")
    (g,) = discover(tmp_path / "a", incomplete_groups="convert")
    assert g.id == "2026-11-30T03:00:00" and g.files[0] == str(sb00)
    for f in (tmp_path / "a").iterdir():
        f.write_text("not HDF5\n")
    (g,) = discover(tmp_path / "a", incomplete_groups="convert")
    assert g.id == format_timestamp(T0 + dt.timedelta(seconds=1))  # sb00's name


def test_first_integrations_are_cached_by_file_identity(tmp_path):
    """The second discovery reads no header; a file replaced (same name) is read again; a
    cache that cannot be used is only a warning."""
    cache = tmp_path / "work" / ".dsa110ms" / "inventory.sqlite"
    write_group(tmp_path / "in", T0, subbands=(0, 15))
    (g,) = discover(tmp_path / "in", incomplete_groups="convert", inventory=cache)
    cached = Inventory(cache)
    cached.preload(list(g.files.values()))
    assert all(cached._known.values()) and len(cached._known) == 2
    # the same file (size, mtime, inode) with its header made unreadable: served from the cache
    sb15 = Path(g.files[15])
    st = sb15.stat()
    with open(sb15, "r+b") as f:
        f.write(b"\0" * 8)  # HDF5's signature
    os.utime(sb15, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(HeaderError):
        read_first_integration(str(sb15))
    (g,) = discover(tmp_path / "in", incomplete_groups="convert", inventory=cache)
    assert g.id == "2026-11-30T03:00:00"
    # replaced by a file of another observation, same name: read again
    sb15.unlink()
    write(tmp_path / "in", sb15.name[:19], 15, T0 + dt.timedelta(seconds=0.5))
    m = discover(tmp_path / "in", incomplete_groups="convert", inventory=cache)
    assert len(m) == 0 and "sb15.hdf5's first integration" in m.skipped[0]
    # a cache that cannot be opened (its path is a directory): discovery reads the headers
    sb15.unlink()
    write(tmp_path / "in", sb15.name[:19], 15, T0)
    (g,) = discover(tmp_path / "in", incomplete_groups="convert", inventory=tmp_path / "in")
    assert g.id == "2026-11-30T03:00:00"


def test_a_late_sb00_adds_no_second_ms_in_a_real_run(tmp_path, scratch_root):
    """B.3 through Snakemake: sb01 and sb15 (named 03:00:01-03) are published under
    `incomplete_groups=convert`; then sb00 arrives, named 03:00:02. The next run finds the
    same group (its data start at 03:00:00): still one MS, and no 03:00:02.ms beside it (the
    id was sb00's name, else the earliest file's: 03:00:01.ms, then 03:00:02.ms); the summary
    names the late file."""
    from .conftest import run_snakemake, staging_left, visible

    spec = SimulationSpec(n_antennas=4, n_integrations=2, n_channels=8)
    d, out = tmp_path / "in", tmp_path / "out"
    d.mkdir()
    for sb, late_s in ((1, 1), (15, 3)):
        write_subband_file(
            d / f"{format_timestamp(T0 + dt.timedelta(seconds=late_s))}_sb{sb:02d}.hdf5",
            spec,
            sb,
            T0,
            ORDER,
        )
    config = {
        "input_dir": d,
        "output_dir": out,
        "scratch_root": scratch_root,
        "incomplete_groups": "convert",
    }
    run_snakemake(tmp_path, "--cores", "2", config=config)
    assert visible(out) == ["2026-11-30T03:00:00.ms"]
    write_subband_file(d / "2026-11-30T03:00:02_sb00.hdf5", spec, 0, T0, ORDER)
    proc = run_snakemake(tmp_path, "--cores", "2", config=config, check=False)
    assert visible(out) == ["2026-11-30T03:00:00.ms"], proc.stdout[-3000:]
    assert staging_left(out) == []
    # the summary's one row is that group, naming the late file (reported, not converted)
    (row,) = [x.strip() for x in proc.stdout.splitlines() if x.strip()[:4] == "2026"]
    assert row.startswith("2026-11-30T03:00:00 ") and "03:00:02_sb00.hdf5" in row, row


def test_an_ms_published_under_its_sb00_name_by_an_earlier_version_is_kept(tmp_path, scratch_root):
    """Versions before 0.14 named a group after its sb00 file: after an upgrade, a group whose
    MS was published under that name is not converted a second time under its data's start
    (one observation, two MSs); the run says where it is, and runs no job for it."""
    import json

    from dsa110ms.ms.publish import STAMP_NAME, OutputArea

    from .conftest import run_snakemake, visible

    spec = SimulationSpec(n_antennas=4, n_integrations=2, n_channels=8)
    d, out = tmp_path / "in", tmp_path / "out"
    d.mkdir()
    for sb, late_s in ((0, 2), (15, 3)):
        name = f"{format_timestamp(T0 + dt.timedelta(seconds=late_s))}_sb{sb:02d}.hdf5"
        write_subband_file(d / name, spec, sb, T0, ORDER)
    config = {"input_dir": d, "output_dir": out, "scratch_root": scratch_root}
    config["incomplete_groups"] = "convert"
    run_snakemake(tmp_path, "--cores", "2", config=config)
    # what an earlier version left: the MS under sb00's name, its stamp without inputs
    area = OutputArea.of(out)
    legacy = out / "2026-11-30T03:00:02.ms"
    os.rename(area.final_ms("2026-11-30T03:00:00"), legacy)
    stamp = json.loads((legacy / STAMP_NAME).read_text())
    stamp["group"] = "2026-11-30T03:00:02"
    del stamp["inputs"]
    (legacy / STAMP_NAME).write_text(json.dumps(stamp))
    area.stamp("2026-11-30T03:00:00").unlink()
    for record in (tmp_path / "logs" / "metrics" / "groups").glob("2026-11-30T03:00:00.*"):
        record.rename(record.with_name(record.name.replace("03:00:00", "03:00:02")))
    proc = run_snakemake(tmp_path, "--cores", "2", config=config)
    assert visible(out) == ["2026-11-30T03:00:02.ms"], proc.stdout[-3000:]
    assert "published as" in proc.stdout and "ms_part" not in proc.stdout, proc.stdout[-3000:]
    (row,) = [x.strip() for x in proc.stdout.splitlines() if x.strip()[:4] == "2026"]
    assert "up-to-date" in row and "2026-11-30T03:00:02.ms" in row, row

    # sb00 re-sent under a later name (the old MS is found by its contents, not by the name of
    # the sb00 file the group holds now), and a late sb01: reported, never a second MS
    write_subband_file(d / "2026-11-30T03:00:04_sb00.hdf5", spec, 0, T0, ORDER)
    write_subband_file(d / "2026-11-30T03:00:01_sb01.hdf5", spec, 1, T0, ORDER)
    # and the next observation, which this run converts: the kept group is not a failure
    later = T0 + dt.timedelta(seconds=309)
    for sb in (0, 15):
        write_subband_file(d / f"{format_timestamp(later)}_sb{sb:02d}.hdf5", spec, sb, later, ORDER)
    proc = run_snakemake(
        tmp_path, "--cores", "2", config={**config, "duplicate_subbands": "latest"}
    )
    assert visible(out) == ["2026-11-30T03:00:02.ms", "2026-11-30T03:05:09.ms"], proc.stdout
    rows = [x.strip() for x in proc.stdout.splitlines() if x.strip()[:8] == "2026-11-"]
    assert "CHANGED" in rows[0] and "3 subband files, the MS 2 SPWs" in rows[0], rows
    assert "2026-11-30T03:00:02.ms" in rows[0] and "converted" in rows[1], rows
    run = json.loads((tmp_path / "logs/metrics/runs.jsonl").read_text().splitlines()[-1])
    assert run["groups_failed"] == 0 and run["groups_converted"] == 1, run
    assert "msmetadata_cmpt" not in proc.stdout, "CASA's log goes to the job's log only"
    report = (tmp_path / "report" / "groups.html").read_text()
    assert "published as 2026-11-30T03:00:02.ms" in report and "FAILED" not in report


def test_an_empty_file_is_what_h5py_says_of_it_and_its_error_keeps_nothing(tmp_path):
    """An empty file's error is h5py's own (found once per process, not by opening each one),
    and the error of a file h5py cannot open carries none of h5py's traceback."""
    import io

    import h5py

    empty = tmp_path / "2026-11-30T03:00:00_sb00.hdf5"
    empty.write_bytes(b"")
    with pytest.raises(OSError) as h5py_error:
        h5py.File(io.BytesIO(b""), "r")
    for _ in range(2):
        with pytest.raises(HeaderError) as caught:
            read_first_integration(str(empty))
        assert str(caught.value) == f"OSError: {h5py_error.value}"
    junk = tmp_path / "2026-11-30T03:00:00_sb01.hdf5"
    junk.write_bytes(b"not HDF5")
    with pytest.raises(HeaderError, match="^OSError: ") as caught:
        read_first_integration(str(junk))
    assert caught.value.__context__ is None and caught.value.__cause__ is None


def test_the_listing_gives_a_window_of_names_and_every_odd_name(tmp_path):
    """Inventory.names: the names in the window and every name not starting with a digit
    (discovery reports them), in name order, as a filter of every name gives them; and every
    name without bounds. A refresh writes only what changed."""
    d = tmp_path / "in"
    d.mkdir()
    days, hours = (28, 29, 30), (0, 12, 23)
    names = [
        f"2026-11-{day}T{h:02d}:00:00_sb{sb:02d}.hdf5"
        for day in days
        for h in hours
        for sb in (0, 15)
    ]
    names += [
        "notes.hdf5",
        "-x.hdf5",
        ":x.hdf5",
        "~x.hdf5",
        "Ünï.hdf5",
        "2026-13-99T00:00:00_sb00.hdf5",
    ]
    for name in names:
        (d / name).write_bytes(b"")
    (d / "2026-11-29T12:00:00_sb01_incomplete.hdf5").write_bytes(b"")
    (d / "readme.txt").write_bytes(b"")
    inventory = Inventory(tmp_path / "inventory.sqlite")
    listing = inventory.refresh_listing(d)
    assert (listing.added, listing.removed, listing.total) == (len(names), 0, len(names))
    for first, last in [
        ("2026-11-29T00:00:00", "2026-11-29T23:59:59"),
        ("2026-11-29T12:00:00", "2026-11-29T12:00:00"),
        ("", "2026-11-28T23:00:00"),
        ("2026-11-30T00:00:00", "~"),
        ("2027-01-01T00:00:00", "2027-01-01T23:59:59"),
    ]:
        expected = sorted(n for n in names if first <= n <= last + "~" or not "0" <= n < ":")
        assert inventory.names(d, first, last) == expected, (first, last)
    assert inventory.names(d) == sorted(names)
    # one file gone, two new: only they are written
    (d / names[0]).unlink()
    for name in ("2026-12-01T00:00:00_sb00.hdf5", "zz.hdf5"):
        (d / name).write_bytes(b"")
    st = d.stat()  # changed, whatever the clock's granularity
    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    listing = Inventory(tmp_path / "inventory.sqlite").refresh_listing(d)
    assert (listing.added, listing.removed, listing.total) == (2, 1, len(names) + 1)
    now = sorted({*names[1:], "2026-12-01T00:00:00_sb00.hdf5", "zz.hdf5"})
    assert inventory.names(d) == now
