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
