"""Group discovery from file names: jitter, _incomplete, duplicates, gaps, window, policies.
The files here are empty placeholders: no header can be read, so a group's id is the time in
its names (the fallback); tests/test_identity.py has real files, whose data give the id."""

import datetime as dt
import os
from pathlib import Path

import pytest

from dsa110ms.errors import DiscoveryError
from dsa110ms.groups import MAX_TOLERANCE_S, Manifest, discover, parse_timestamp, subband_file_name

T0 = dt.datetime(2026, 3, 1, 12, 0, 0)


def touch_group(d, start, subbands=range(16), jitter=(0, 1, 2, 3)):
    """Empty placeholder files with a few seconds of node jitter."""
    for sb in subbands:
        t = start + dt.timedelta(seconds=jitter[sb % len(jitter)])
        (d / subband_file_name(t, sb)).touch()


def test_jittered_groups_are_anchored_on_sb00(tmp_path):
    touch_group(tmp_path, T0)
    touch_group(tmp_path, T0 + dt.timedelta(seconds=309), jitter=(2, 0, 3, 1))
    m = discover(tmp_path)
    assert [g.id for g in m] == ["2026-03-01T12:00:00", "2026-03-01T12:05:11"]
    assert all(len(g.files) == 16 for g in m)
    assert m.skipped == []


def test_sb00_late_still_groups_earlier_files(tmp_path):
    touch_group(tmp_path, T0, jitter=(3, 0, 0, 1))  # sb00 three seconds after the others
    (g,) = list(discover(tmp_path))
    assert g.id == "2026-03-01T12:00:03" and len(g.files) == 16


def test_incomplete_files_and_foreign_names_are_ignored(tmp_path):
    touch_group(tmp_path, T0)
    (tmp_path / "2026-03-01T12:05:09_sb00_incomplete.hdf5").touch()
    (tmp_path / "notes.hdf5").touch()
    (tmp_path / "2026-03-01T12:00:00_sb16.hdf5").touch()
    m = discover(tmp_path)
    assert len(m) == 1
    assert [s.split(": ", 1)[1] for s in m.skipped] == [
        "unknown subband sb16 (DSA-110 has sb00-sb15), ignored; rename it or move it out of "
        "input_dir",
        "not named YYYY-MM-DDTHH:MM:SS_sbNN.hdf5 (ASCII digits), ignored; rename it or move it out "
        "of input_dir",
    ]


def test_missing_subband_policies(tmp_path):
    touch_group(tmp_path, T0, subbands=[sb for sb in range(16) if sb != 9])
    m = discover(tmp_path)
    assert len(m) == 0
    assert "missing sb09" in m.skipped[0] and "2026-03-01T12:00:00" in m.skipped[0]
    with pytest.raises(DiscoveryError, match="missing sb09"):
        discover(tmp_path, incomplete_groups="fail")
    (g,) = list(discover(tmp_path, incomplete_groups="convert"))
    assert sorted(g.files) == [sb for sb in range(16) if sb != 9]
    assert g.subbands_ascending_frequency()[0] == 15


def test_group_without_sb00(tmp_path):
    touch_group(tmp_path, T0, subbands=range(1, 16))
    m = discover(tmp_path)
    assert len(m) == 0 and len(m.skipped) == 15
    assert "no sb00" in m.skipped[0]
    (g,) = list(discover(tmp_path, incomplete_groups="convert"))
    assert len(g.files) == 15


def test_duplicate_subband_policies(tmp_path):
    touch_group(tmp_path, T0)
    (tmp_path / subband_file_name(T0 + dt.timedelta(seconds=20), 4)).touch()  # re-sent sb04
    m = discover(tmp_path)
    assert len(m) == 0 and "duplicate subbands (sb04" in m.skipped[0]
    with pytest.raises(DiscoveryError, match="duplicate"):
        discover(tmp_path, duplicate_subbands="fail")
    (g,) = list(discover(tmp_path, duplicate_subbands="latest"))
    assert g.files[4].endswith("12:00:20_sb04.hdf5")


def test_duplicate_sb00_merges_into_one_group_named_by_the_sb00_kept(tmp_path):
    touch_group(tmp_path, T0)
    (tmp_path / subband_file_name(T0 + dt.timedelta(seconds=5), 0)).touch()
    # the id is the same under every policy: the stream scans with `latest` and runs each batch
    # (only=[id]) with the configured policy
    m = discover(tmp_path, only=["2026-03-01T12:00:05"])
    assert len(m) == 0 and m.skipped[0].startswith("group 2026-03-01T12:00:05: skipped, dup")
    (g,) = list(discover(tmp_path, duplicate_subbands="latest"))
    assert g.id == "2026-03-01T12:00:05" and g.files[0].endswith("12:00:05_sb00.hdf5")


def test_group_id_is_the_time_of_the_sb00_file_converted(tmp_path):
    """Two consecutive observations (sb00 at 12:00:02 and 12:05:09) at the largest tolerance
    and duplicate_subbands=latest: two groups, each named by its own sb00 and holding its own
    files (a window of 400 s took them as one group named 12:00:02 holding 12:05:09's data)."""
    touch_group(tmp_path, T0 + dt.timedelta(seconds=2), jitter=(0, 1, -1, 2))
    touch_group(tmp_path, T0 + dt.timedelta(seconds=309), jitter=(0, 2, 1, 3))
    m = discover(tmp_path, tolerance_s=MAX_TOLERANCE_S, duplicate_subbands="latest")
    assert [g.id for g in m] == ["2026-03-01T12:00:02", "2026-03-01T12:05:09"]
    for g in m:
        times = [parse_timestamp(Path(p).name[:19]) for p in g.files.values()]
        assert len(times) == 16 and all(abs(t - parse_timestamp(g.id)).seconds <= 3 for t in times)
    for bad in (400, 1e300, float("nan"), float("inf"), 0):
        with pytest.raises(DiscoveryError, match="tolerance_s=.*at most 150 s"):
            discover(tmp_path, tolerance_s=bad)


def test_file_far_from_the_sb00_kept_skips_the_group_naming_it(tmp_path):
    """sb00 re-sent 55 s later: `latest` keeps it, so the group is named 12:00:55, and sb05
    (10 s before the first sb00, 65 s before the id) is farther than the 60 s tolerance."""
    touch_group(tmp_path, T0, subbands=[sb for sb in range(16) if sb != 5])
    (tmp_path / subband_file_name(T0 - dt.timedelta(seconds=10), 5)).touch()
    (tmp_path / subband_file_name(T0 + dt.timedelta(seconds=55), 0)).touch()
    m = discover(tmp_path, duplicate_subbands="latest")
    assert len(m) == 0
    assert m.skipped == [
        "group 2026-03-01T12:00:55: not converted: 2026-03-01T11:59:50_sb05.hdf5 is named "
        "2026-03-01T11:59:50, more than tolerance_s=60 s from 2026-03-01T12:00:55. Rename a "
        "mislabelled file to the time its data start; move a file of another observation out of "
        "input_dir"
    ]


def test_group_without_sb00_is_named_by_its_earliest_file_kept(tmp_path):
    for seconds, sb in ((0, 1), (2, 2), (10, 1)):  # sb01 re-sent at 12:00:10
        (tmp_path / subband_file_name(T0 + dt.timedelta(seconds=seconds), sb)).touch()
    (g,) = discover(tmp_path, incomplete_groups="convert", duplicate_subbands="latest")
    assert g.id == "2026-03-01T12:00:02" and g.files[1].endswith("12:00:10_sb01.hdf5")


def test_tolerance(tmp_path):
    touch_group(tmp_path, T0, subbands=range(15))
    (tmp_path / subband_file_name(T0 + dt.timedelta(seconds=90), 15)).touch()
    assert len(discover(tmp_path)) == 0
    assert len(discover(tmp_path, tolerance_s=120)) == 1


def test_time_window(tmp_path):
    for k in range(4):
        touch_group(tmp_path, T0 + dt.timedelta(seconds=309 * k))
    m = discover(tmp_path, start_time="2026-03-01T12:05:00", end_time="2026-03-01T12:10:18")
    assert [g.id for g in m] == ["2026-03-01T12:05:09", "2026-03-01T12:10:18"]


def test_a_window_reads_only_the_names_near_it_and_finds_what_the_whole_directory_gives(
    tmp_path, monkeypatch
):
    """A window's discovery skips the names far from it unparsed and unread (a day of a year's
    archive), and finds the groups, skips and notes the whole directory gives for it: at its
    edges too, where a group's files straddle the bounds, a late sb00 is named after the
    others, and an incomplete group sits just outside."""
    from dsa110ms import groups

    for k in range(40):
        touch_group(tmp_path, T0 + dt.timedelta(seconds=309 * k), jitter=(0, 1, 2, 3, 40))
    touch_group(tmp_path, T0 - dt.timedelta(seconds=400), subbands=range(8))
    (tmp_path / "notes.hdf5").touch()
    bounds = [
        ("2026-03-01T12:05:09", "2026-03-01T12:10:18"),  # exactly two ids
        ("2026-03-01T12:05:10", "2026-03-01T12:10:17"),  # between them
        ("2026-03-01T11:50:00", "2026-03-01T12:00:00"),  # the incomplete group and the first
        ("2026-03-01T13:00:00", None),
        (None, "2026-03-01T12:30:00"),
    ]
    whole = discover(tmp_path, incomplete_groups="convert")
    read, parse = [], groups._parse_name
    monkeypatch.setattr(groups, "_parse_name", lambda name: read.append(name) or parse(name))
    for start, end in bounds:
        read.clear()
        m = discover(tmp_path, start_time=start, end_time=end, incomplete_groups="convert")
        want = [g for g in whole if (start or "") <= g.id <= (end or "~")]
        assert [(g.id, g.files) for g in m] == [(g.id, g.files) for g in want], (start, end)
        assert "notes.hdf5" in " ".join(m.skipped)
        if start and end:
            assert len(read) < 0.4 * 16 * 40, (start, end, len(read))
    only = ["2026-03-01T12:15:27"]
    assert [g.id for g in discover(tmp_path, only=only)] == only
    empty = discover(tmp_path, start_time="2027-01-01T00:00:00")
    assert "its files span 2026-03-01T11:53:20 to" in empty.empty_reason


def test_missing_input_dir(tmp_path):
    with pytest.raises(DiscoveryError, match="does not exist"):
        discover(tmp_path / "nope")


def test_manifest_round_trip(tmp_path):
    touch_group(tmp_path, T0)
    m = discover(tmp_path)
    m.write(tmp_path / "m" / "manifest.json")
    back = Manifest.read(tmp_path / "m" / "manifest.json")
    assert back.to_json() == m.to_json()
    assert back.groups["2026-03-01T12:00:00"].files == m.groups["2026-03-01T12:00:00"].files


def test_every_process_of_a_run_sees_the_main_process_manifest(tmp_path):
    """Cluster jobs re-read the Snakefile; they must not re-discover (files keep arriving)."""
    from dsa110ms.run.workflow import Run

    (tmp_path / "in").mkdir()
    touch_group(tmp_path / "in", T0)
    config = {"input_dir": str(tmp_path / "in"), "scratch_root": str(tmp_path / "scratch")}
    main = Run.load(config, is_main_process=True, workdir=tmp_path)
    touch_group(tmp_path / "in", T0 + dt.timedelta(seconds=309))  # a new group arrives
    job = Run.load(config, is_main_process=False, workdir=tmp_path)
    assert job.groups() == main.groups() == ["2026-03-01T12:00:00"]
    assert job.parts_ascending_frequency(job.groups()[0]) == main.parts_ascending_frequency(
        main.groups()[0]
    )
    assert job.layout == main.layout


def test_unreadable_file_skips_its_group_with_the_reason(tmp_path):
    touch_group(tmp_path, T0)
    bad = sorted(tmp_path.glob("*_sb05.hdf5"))[0]
    bad.chmod(0)
    code = (
        "from dsa110ms.groups import discover; import sys; m = discover(sys.argv[1]); "
        "print(len(m)); print(m.skipped[0])"
    )
    import subprocess
    import sys

    from .conftest import WITHOUT_DAC_OVERRIDE

    out = subprocess.run(
        [*WITHOUT_DAC_OVERRIDE, sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out == [
        "0",
        f"{bad}: not readable (permission denied); group 2026-03-01T12:00:00 not converted",
    ]


def test_dangling_symlink_is_reported_as_such(tmp_path):
    touch_group(tmp_path, T0)
    link = sorted(tmp_path.glob("*_sb05.hdf5"))[0]
    link.unlink()
    link.symlink_to(tmp_path / "gone" / link.name)
    m = discover(tmp_path)
    assert len(m) == 0
    assert m.skipped == [
        f"{link}: dangling symlink (target {tmp_path / 'gone' / link.name} does not exist); "
        "group 2026-03-01T12:00:00 not converted"
    ]
    os.makedirs(tmp_path / "gone")
    (tmp_path / "gone" / link.name).touch()
    assert len(discover(tmp_path)) == 1


# --- hostile trial of issue 19's fixes: real tiny files (tests/test_identity.py's helpers) ----


def test_one_file_with_another_integration_time_is_named_and_the_others_name_the_group(tmp_path):
    """Finding 7: sb01 and sb15 are converted (incomplete_groups=convert); an sb00 arrives with
    their time_array[0] but twice their integration_time. The id came from sb00 (the lowest
    subband), so the group was renamed 5 s earlier and its join failed on integration_time,
    the published MS unmentioned. The id is what most files hold; sb00 is named with both
    values, in the line of the published group."""
    import h5py

    from .test_identity import T0 as START
    from .test_identity import write, write_group

    write_group(tmp_path, START, subbands=(1, 15))
    (before,) = discover(tmp_path, incomplete_groups="convert")
    sb00 = write(tmp_path, START + dt.timedelta(seconds=2), 0, START)
    with h5py.File(sb00, "r+") as f:
        single = float(f["Header/integration_time"][0])
        f["Header/integration_time"][...] = 2 * single
    m = discover(tmp_path, incomplete_groups="convert")
    assert len(m) == 0 and m.skipped == [
        f"group {before.id}: not converted: {sb00.name}'s first integration (integration_time[0] "
        f"= {2 * single!r} s) is not sb01's ({single!r} s): DSA-110's subbands of one "
        "observation share it exactly. Rename a mislabelled file to the time its data start; "
        "move a file of another observation out of input_dir"
    ]
    assert before.id == "2026-11-30T03:00:00"
    # ... whichever subband is the odd one: the majority names the group
    sb00.unlink()
    write(tmp_path, START + dt.timedelta(seconds=2), 0, START)
    with h5py.File(next(tmp_path.glob("*_sb15.hdf5")), "r+") as f:
        f["Header/integration_time"][...] = 2 * single
    (line,) = discover(tmp_path, incomplete_groups="convert").skipped
    assert line.startswith(f"group {before.id}: not converted: 2026-11-30T03:00:01_sb15.hdf5's")


def test_entries_that_cannot_be_looked_at_are_one_line_each(tmp_path):
    """Finding 8: a symlink loop named as a subband stopped the run with an ELOOP traceback
    (DirEntry.is_file raises). Every OSError from looking at an entry (a loop, a target behind
    a directory without permission, a name too long) is one line naming the entry and the
    reason; its group is reported as any incomplete group."""
    import subprocess
    import sys

    from .conftest import WITHOUT_DAC_OVERRIDE

    touch_group(tmp_path, T0, subbands=(0, 15))
    loop, locked, too_long = (tmp_path / subband_file_name(T0, sb) for sb in (6, 7, 8))
    loop.symlink_to(loop.name)
    (tmp_path / "locked").mkdir(mode=0)
    locked.symlink_to(tmp_path / "locked" / "x.hdf5")
    too_long.symlink_to("x" * 300)
    code = (
        "import sys\nfrom dsa110ms.groups import discover, unreadable\n"
        "m = discover(sys.argv[1])\nprint(*m.skipped, sep='\\n')\n"
        "print(unreadable(sys.argv[2]))"
    )
    proc = subprocess.run(
        [*WITHOUT_DAC_OVERRIDE, sys.executable, "-c", code, str(tmp_path), str(loop)],
        capture_output=True,
        text=True,
    )
    tail = "never read, ignored; fix it or move it out of input_dir"
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.splitlines() == [
        f"{loop}: cannot be looked at (Too many levels of symbolic links, ELOOP): {tail}",
        f"{locked}: cannot be looked at (Permission denied, EACCES): {tail}",
        f"{too_long}: cannot be looked at (File name too long, ENAMETOOLONG): {tail}",
        "group 2026-03-01T12:00:00: skipped, incomplete (missing sb01, sb02, sb03, sb04, sb05, "
        "sb06, sb07, sb08, sb09, sb10, sb11, sb12, sb13, sb14); policy incomplete_groups=skip",
        # a file that became a loop after the scan: its group says why
        "cannot be looked at (Too many levels of symbolic links, ELOOP)",
    ]


def test_a_header_not_read_is_logged_once(tmp_path, caplog):
    """Finding 15f: `first integration not read` was logged twice per file (once to name the
    group, once to judge its files)."""
    from .test_identity import T0 as START
    from .test_identity import write_group

    write_group(tmp_path, START, subbands=(0, 15))
    next(tmp_path.glob("*_sb00.hdf5")).write_text("not HDF5\n")
    with caplog.at_level("INFO", logger="dsa110ms.groups"):
        (g,) = discover(tmp_path, incomplete_groups="convert")
    assert g.id == "2026-11-30T03:00:00"
    assert [r.getMessage().count("first integration not read") for r in caplog.records] == [1, 0]


def test_times_less_than_a_second_apart_are_written_with_their_fraction(tmp_path):
    """Finding 15b: tolerance_s=1e-9 said "named 03:05:09 but its data start at 03:05:09 (more
    than tolerance_s=0 s apart)": times are written finer where they are less than a second
    apart, and tolerance_s as given."""
    from .test_identity import T0 as START
    from .test_identity import write

    write(tmp_path, START, 0, START + dt.timedelta(seconds=0.25))
    (line,) = discover(tmp_path, tolerance_s=1e-9, incomplete_groups="convert").skipped
    assert (
        "2026-11-30T03:00:00_sb00.hdf5 is named 2026-11-30T03:00:00 but its data start at "
        "2026-11-30T03:00:00.2" in line
    )
    assert "(more than tolerance_s=1e-09 s apart): mislabelled" in line
    # a second or more apart: to the second, as before
    (line,) = discover(tmp_path, tolerance_s=0.1, incomplete_groups="convert").skipped
    assert "(more than tolerance_s=0.1 s apart)" in line


def test_data_before_the_year_1000_are_one_line(tmp_path):
    """A group id of the year 900 was written '900-01-01T...' (strftime), which is not the
    timestamp form: reading it back raised ValueError out of discovery."""
    import h5py

    from dsa110ms.groups import jd_from_datetime

    from .test_identity import T0 as START
    from .test_identity import write_group

    write_group(tmp_path, START, subbands=(0, 15))
    for f in tmp_path.iterdir():
        with h5py.File(f, "r+") as h:
            h["Header/time_array"][0] = jd_from_datetime(dt.datetime(900, 1, 1, 0, 0, 30))
    (line,) = discover(tmp_path, incomplete_groups="convert").skipped
    assert line.startswith("group 0900-01-01T00:00:2")
    assert "but its data start at 0900-01-01T00:00:2" in line


def test_leap_second_bounds_and_group_ids_mean_the_next_days_first_second(tmp_path):
    """Finding 15c: end_time=2016-12-31T23:59:60 was refused though file names so written are
    accepted; it is 23:59:59 + 1 s, as in names, for start_time, end_time and groups."""
    from .test_identity import write

    for sb in (0, 15):
        write(tmp_path, "2016-12-31T23:59:60", sb, dt.datetime(2017, 1, 1))
    leap, after = "2016-12-31T23:59:60", "2017-01-01T00:00:00"
    for window in ({"end_time": leap}, {"start_time": leap}, {"only": [leap]}):
        (g,) = discover(tmp_path, incomplete_groups="convert", **window)
        assert g.id == after
    assert len(discover(tmp_path, end_time="2016-12-31T23:59:59", incomplete_groups="convert")) == 0


def test_reversed_window_is_said_so(tmp_path):
    """Finding 15a: start_time after end_time said "... widen the window"."""
    touch_group(tmp_path, T0)
    with pytest.raises(DiscoveryError) as err:
        discover(tmp_path, start_time="2026-03-02T00:00:00", end_time="2026-03-01T00:00:00")
    assert str(err.value) == (
        "start_time=2026-03-02T00:00:00 is after end_time=2026-03-01T00:00:00: the two bounds "
        "are reversed; swap them"
    )
    assert (
        len(discover(tmp_path, start_time="2026-03-01T12:00:00", end_time="2026-03-01T12:00:00"))
        == 1
    )


def test_a_manifest_that_cannot_be_written_is_one_line(tmp_path):
    """Finding 15e: an unwritable .dsa110ms/ in the working directory gave a PermissionError
    traceback (even with -n). The run's discovery error names the path and the reason (here a
    file where the directory should be; a directory without write permission is said so alike)."""
    from dsa110ms.run.workflow import Run

    (tmp_path / "in").mkdir()
    touch_group(tmp_path / "in", T0)
    (tmp_path / ".dsa110ms").write_text("")
    config = {"input_dir": str(tmp_path / "in"), "scratch_root": str(tmp_path / "scratch")}
    run = Run.load(config, is_main_process=True, workdir=tmp_path)
    assert run.discovery_error == (
        f"{tmp_path}/.dsa110ms/manifest.json: the run's group manifest cannot be written (File "
        f"exists); make {tmp_path}/.dsa110ms a writable directory"
    )


def test_names_that_would_split_or_not_print_the_line_are_escaped(tmp_path):
    """Nothing is silent, in one line: a file named with a newline, or with a byte that is not
    UTF-8, and a symlink whose target holds a newline, each stay one printable line."""
    touch_group(tmp_path, T0, subbands=(0,))
    os.close(os.open(os.fsencode(tmp_path) + b"/bad\nname\xff_sb00.hdf5", os.O_CREAT))
    (tmp_path / subband_file_name(T0, 1)).symlink_to("gone\naway")
    lines = discover(tmp_path).skipped
    assert len(lines) == 2 and all(map(str.isprintable, lines))
    assert lines[0] == (
        f"{tmp_path}/bad\\nname\\udcff_sb00.hdf5: not named YYYY-MM-DDTHH:MM:SS_sbNN.hdf5 (ASCII "
        "digits), ignored; rename it or move it out of input_dir"
    )
    assert "dangling symlink (target gone\\naway does not exist)" in lines[1]
    assert lines[0].encode("utf-8")  # strict: a surrogate would raise


@pytest.mark.parametrize(
    "time_jd, integration_s, said",
    [
        (None, float("nan"), "integration_time[0] = nan s, which is no length"),
        (1721425.5, None, "time_array[0] = 1721425.5 and integration_time[0] = 12.884901888 s, "),
    ],
)
def test_a_start_that_is_no_date_says_which_number_makes_it_so(
    tmp_path, time_jd, integration_s, said
):
    """A file whose first integration is a date (0001-01-01T00:00:00) but whose start, half an
    integration earlier, is none; or whose integration_time is NaN: the line says which number,
    not 'time_array[0] ... is no date' of a time that is one."""
    import h5py

    from .test_identity import T0 as START
    from .test_identity import write_group

    write_group(tmp_path, START, subbands=(0, 15))
    sb15 = next(tmp_path.glob("*_sb15.hdf5"))
    with h5py.File(sb15, "r+") as h:
        for key, value in (("time_array", time_jd), ("integration_time", integration_s)):
            if value is not None:
                h[f"Header/{key}"][0] = value
    (line,) = discover(tmp_path, incomplete_groups="convert").skipped
    assert f"{sb15.name} holds {said}" in line


def test_a_manifest_that_cannot_be_read_is_one_line(tmp_path):
    """A manifest that is a directory, or not JSON (a full disk...), raised an OSError or a
    JSONDecodeError traceback in every process reading it."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "bad").write_text('{"input_dir": ')
    with pytest.raises(
        DiscoveryError, match=r"dir: group manifest cannot be read \(Is a directory"
    ):
        Manifest.read(tmp_path / "dir")
    with pytest.raises(DiscoveryError, match="bad: group manifest is not one the main Snakemake"):
        Manifest.read(tmp_path / "bad")
