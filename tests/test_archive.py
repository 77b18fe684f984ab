"""The archive driver (python -m dsa110ms.archive) on small real archives: window by window,
resumable after SIGKILL, failures in the ledger and --retry-failed, and every bad input one line.
The inventory's listing and the ledger's done-check are also tested on their own."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dsa110ms.faults import FAULTS_ENV
from dsa110ms.groups import discover
from dsa110ms.inventory import Inventory
from dsa110ms.ledger import Ledger, Window, published_ids, windows_between
from dsa110ms.simulate import SimulationSpec, simulate

from .conftest import leftovers, staging_left
from .test_robustness import assert_matches_input

DAYS = ("2026-11-29", "2026-11-30", "2026-12-01")


def tiny_groups(d: Path, day: str, n: int, hour: int = 12) -> list[str]:
    """``n`` groups of two subbands (3 antennas, 1 integration) on ``day`` from ``hour`` UTC."""
    spec = SimulationSpec(
        n_groups=n,
        n_antennas=3,
        n_integrations=1,
        subbands=(0, 15),
        start=f"{day}T{hour:02d}:00:00",
    )
    simulate(spec, d)
    first = dt.datetime.fromisoformat(f"{day}T{hour:02d}:00:00")
    last = first + dt.timedelta(hours=1)
    return [
        g.id
        for g in discover(d, incomplete_groups="convert")
        if first <= dt.datetime.fromisoformat(g.id) <= last
    ]


@pytest.fixture(scope="module")
def archive_input(tmp_path_factory) -> tuple[Path, list[str]]:
    """Three days of two tiny groups each."""
    d = tmp_path_factory.mktemp("archive") / "in"
    ids = [gid for day in DAYS for gid in tiny_groups(d, day, 2)]
    assert len(ids) == 6
    return d, ids


def write_config(work: Path, input_dir: Path, scratch_root: Path, **extra) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    path = work / "archive.yaml"
    config = {
        "input_dir": str(input_dir),
        "output_dir": "out",
        "log_dir": "logs",
        "report_dir": "report",
        "metrics_dir": "logs/metrics",
        "scratch_root": str(scratch_root),
        "incomplete_groups": "convert",
        **extra,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def archive_command(config: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dsa110ms.archive",
        "--cores",
        "2",
        "--progress-s",
        "5",
        "--configfile",
        str(config),
        *args,
    ]


def run_archive(work: Path, config: Path, *args: str, faults: dict | None = None, check=True):
    env = {**os.environ, FAULTS_ENV: json.dumps(faults)} if faults else None
    proc = subprocess.run(
        archive_command(config, *args),
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-5000:]
    return proc


def published(out: Path) -> dict[str, int]:
    """Published MS -> its inode (a republished MS is a new directory)."""
    return {p.name: p.stat().st_ino for p in out.glob("*.ms")}


def test_an_archive_converts_window_by_window_and_a_rerun_runs_nothing(
    archive_input, tmp_path, scratch_root
):
    d, ids = archive_input
    work = tmp_path / "work"
    config = write_config(work, d, scratch_root)
    # a dry run (-np: options together) plans every window and records nothing
    dry = run_archive(work, config, "--", "-np")
    assert dry.stdout.count(": planned 2 groups") == 3, dry.stdout
    assert not (work / "out").exists() and not Ledger(work / "logs/archive/ledger.sqlite").windows()
    proc = run_archive(work, config)
    out = work / "out"
    assert sorted(published(out)) == [f"{g}.ms" for g in ids], proc.stdout[-3000:]
    for gid in ids:
        assert_matches_input(out / f"{gid}.ms", d, gid)
    assert "3 windows of 24 h" in proc.stdout and "0 done, 3 to run" in proc.stdout
    assert "6/6 groups published" in proc.stdout
    # the next window started before the one before it ended (--lookahead 2: two groups a day)
    lines = proc.stdout.splitlines()
    started = [i for i, x in enumerate(lines) if "window 2026-11-30T00:00:00: started" in x]
    ended = [i for i, x in enumerate(lines) if "window 2026-11-29T00:00:00: 2 published" in x]
    assert started and ended and started[0] < ended[0], proc.stdout
    ledger = Ledger(work / "logs" / "archive" / "ledger.sqlite")
    assert [w[3] for w in ledger.windows()] == ["done"] * 3
    assert [g[2] for g in ledger.groups()] == ["published"] * 6
    # each window ran in its own working directory, with its own manifest
    # (whole UTC days: the windows stay the same as files are added)
    starts = [w[0] for w in ledger.windows()]
    assert starts == ["2026-11-29T00:00:00", "2026-11-30T00:00:00", "2026-12-01T00:00:00"]
    for day, start in zip(DAYS, starts, strict=True):
        manifest = json.loads(
            (work / ".dsa110ms/archive" / start / ".dsa110ms/manifest.json").read_text()
        )
        assert all(g.startswith(day) for g in manifest["groups"]) and len(manifest["groups"]) == 2
    assert not staging_left(out) and not leftovers(scratch_root)
    summary = (work / "report" / "archive" / "index.html").read_text()
    assert "6 of 6 groups published" in summary
    assert '<a href="./2026-11-30T00:00:00/groups.html">run report</a>' in summary
    before = published(out)
    again = run_archive(work, config)
    assert "3 done, 0 to run" in again.stdout and "started" not in again.stdout, again.stdout
    assert published(out) == before
    # a published MS removed by hand: its window is not done any more, and only it runs
    victim = out / f"{ids[2]}.ms"
    os.rename(victim, tmp_path / "aside.ms")
    third = run_archive(work, config)
    assert "2 done, 1 to run" in third.stdout, third.stdout
    assert published(out).keys() == before.keys()
    assert {k: v for k, v in published(out).items() if k != victim.name} == {
        k: v for k, v in before.items() if k != victim.name
    }


def test_sigkill_of_the_driver_then_the_same_command_publishes_each_group_once(
    archive_input, tmp_path, scratch_root
):
    """SIGKILL the driver while its first window's groups convert: its Snakemake runs stop and
    clean up by themselves; the same command then runs only the windows not done, and no MS
    published before the kill is published again."""
    d, ids = archive_input
    work = tmp_path / "work"
    config = write_config(work, d, scratch_root)
    slow = {"part_delay_s": {"*/sb15": 3}}
    driver = subprocess.Popen(
        archive_command(config, "--at-once", "1"),
        cwd=work,
        env={**os.environ, FAULTS_ENV: json.dumps(slow)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = work / "out"
    deadline = time.time() + 300
    while not published(out) and time.time() < deadline:
        time.sleep(0.2)
    assert published(out), "nothing published in 300 s"
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    first = published(out)
    # at once: its window's Snakemake, stopping (SIGINT at its parent's death) and cleaning up,
    # still holds the driver's lock: the new driver waits for it, then runs what is not done
    proc = run_archive(work, config)
    assert not _snakemake_running(work / ".dsa110ms" / "archive")
    assert sorted(published(out)) == [f"{g}.ms" for g in ids], proc.stdout[-3000:]
    assert {k: published(out)[k] for k in first} == first  # none published twice
    assert "0 done, 3 to run" in proc.stdout or "1 done, 2 to run" in proc.stdout
    assert not staging_left(out) and not leftovers(scratch_root)


def _snakemake_running(window_dir: Path) -> bool:
    """Whether a Snakemake process runs in a window's working directory."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cwd.startswith(str(window_dir)) and b"snakemake" in cmdline:
            return True
    return False


def test_failed_groups_are_in_the_ledger_and_retry_failed_runs_only_them(
    archive_input, tmp_path, scratch_root
):
    d, ids = archive_input
    work = tmp_path / "work"
    config = write_config(work, d, scratch_root)
    victim = ids[3]
    proc = run_archive(work, config, faults={"concat": {victim: {1: "corrupt"}}}, check=False)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert f"{victim} failed:" in proc.stdout
    out = work / "out"
    assert sorted(published(out)) == sorted(f"{g}.ms" for g in ids if g != victim)
    ledger = Ledger(work / "logs" / "archive" / "ledger.sqlite")
    ((gid, window, status, reason, _),) = ledger.groups("failed")
    assert (gid, window, status) == (victim, "2026-11-30T00:00:00", "failed") and reason
    # a plain rerun leaves the failure as it is (it is listed, not retried)
    again = run_archive(work, config, check=False)
    assert "3 done, 0 to run" in again.stdout and "1 failed, 0 skipped" in again.stdout, (
        again.stdout
    )
    before = published(out)
    retry = run_archive(work, config, "--retry-failed")
    assert "retrying 1 failed or skipped groups in 1 windows" in retry.stdout, retry.stdout
    assert sorted(published(out)) == [f"{g}.ms" for g in ids]
    assert {k: published(out)[k] for k in before} == before
    assert not ledger.groups("failed")
    assert [w[3] for w in ledger.windows()] == ["done"] * 3  # as they were
    assert_matches_input(out / f"{victim}.ms", d, victim)
    # a plain rerun after the retry: nothing to do, every window done
    last = run_archive(work, config)
    assert "3 done, 0 to run" in last.stdout and "6/6 groups published" in last.stdout
    assert not staging_left(out) and not leftovers(scratch_root)


def test_bad_inputs_are_one_line_each(tmp_path, scratch_root):
    """A window with no files, one with only a neighbour's files (a group at midnight), an
    unreadable inventory, a path in the inventory that has gone, a missing input directory, a
    second driver: one clear line each, nothing lost."""
    d = tmp_path / "in"
    ids = tiny_groups(d, DAYS[0], 1, hour=0) + tiny_groups(d, DAYS[2], 1)
    work = tmp_path / "work"
    # an inventory that is not a database: set aside (named) and rebuilt
    (work / ".dsa110ms").mkdir(parents=True)
    (work / ".dsa110ms" / "inventory.sqlite").write_text("not a database\n")
    config = write_config(work, d, scratch_root)
    proc = run_archive(work, config)
    assert "window 2026-11-30T00:00:00: no input files in it" in proc.stdout, proc.stdout
    # the data's span starts tolerance_s before midnight: that day's window holds only the files
    # of the next day's first group
    assert "window 2026-11-28T00:00:00: no group in it (its 2 files" in proc.stdout, proc.stdout
    assert "set aside as inventory.sqlite.broken-" in proc.stdout
    assert sorted(published(work / "out")) == [f"{g}.ms" for g in ids]
    # an inventory that is a directory: one line, exit 1
    bad = write_config(work, d, scratch_root, inventory=str(tmp_path))
    proc = run_archive(work, bad, check=False)
    assert proc.returncode == 1
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("dsa110ms: error:")]
    assert "inventory" in line and str(tmp_path) in line
    # a missing input directory
    gone = write_config(work, tmp_path / "nowhere", scratch_root)
    proc = run_archive(work, gone, check=False)
    assert proc.returncode == 1 and "nowhere: input directory does not exist" in proc.stdout
    # a second driver in the same working directory
    held = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from dsa110ms.archive import "
            "hold_driver_lock, ARCHIVE_DIR; f = hold_driver_lock(ARCHIVE_DIR / 'driver.lock'); "
            "print('held', flush=True); time.sleep(60)",
        ],
        cwd=work,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert held.stdout.readline().strip() == "held"
        proc = run_archive(work, config, check=False)
        assert proc.returncode == 1
        assert f"another archive driver runs in this working directory (pid {held.pid})" in (
            proc.stdout
        )
    finally:
        held.kill()
        held.wait()
    assert sorted(published(work / "out")) == [f"{g}.ms" for g in ids]


def test_the_listing_is_incremental_and_a_gone_file_is_named(tmp_path):
    d = tmp_path / "in"
    (gid,) = tiny_groups(d, DAYS[0], 1)
    (d / "notes.txt").write_text("not a subband file\n")
    (d / "2026-11-29T12:30:00_sb00_incomplete.hdf5").write_text("")
    inventory = Inventory(tmp_path / "inventory.sqlite")
    first = inventory.refresh_listing(d)
    assert (first.added, first.removed, first.total) == (2, 0, 2)
    unchanged = inventory.refresh_listing(d)
    assert (unchanged.added, unchanged.removed, unchanged.total) == (0, 0, 2)
    (later,) = tiny_groups(d, DAYS[1], 1)
    more = inventory.refresh_listing(d)
    assert (more.added, more.removed, more.total) == (2, 0, 4)
    assert inventory.count(d, subband=0) == 2
    assert inventory.first_and_last(d)[0].startswith("2026-11-29T12:00")
    # discovery from the listing finds what listing the directory finds
    by_listing = discover(
        d, incomplete_groups="convert", inventory=inventory, input_listing="inventory"
    )
    assert [g.id for g in by_listing] == [g.id for g in discover(d, incomplete_groups="convert")]
    # a file gone since the listing: named, its group incomplete (left out, not converted)
    gone = Path(by_listing.groups[later].files[15])
    gone.unlink()
    m = discover(
        d,
        incomplete_groups="skip",
        inventory=Inventory(tmp_path / "inventory.sqlite"),
        input_listing="inventory",
    )
    (note,) = [s for s in m.skipped if str(gone) in s]
    assert "listed in the inventory" in note and "gone from input_dir" in note
    assert later not in m.groups and gid not in m.groups  # both incomplete under skip
    removed = inventory.refresh_listing(d)
    assert (removed.added, removed.removed, removed.total) == (0, 1, 3)
    # no listing of a directory: one line naming what to do
    other = tmp_path / "other"
    other.mkdir()
    from dsa110ms.errors import DiscoveryError

    with pytest.raises(DiscoveryError, match="holds no listing of it; python -m dsa110ms.archive"):
        discover(other, inventory=inventory, input_listing="inventory")


def test_windows_and_the_done_check(tmp_path):
    windows = windows_between("2026-11-29T00:00:00", "2026-12-01T23:59:59", 24)
    assert [(w.start, w.end) for w in windows] == [
        ("2026-11-29T00:00:00", "2026-11-29T23:59:59"),
        ("2026-11-30T00:00:00", "2026-11-30T23:59:59"),
        ("2026-12-01T00:00:00", "2026-12-01T23:59:59"),
    ]
    cut = windows_between("2026-11-29T13:00:00", "2026-12-01T01:00:00", 24)
    assert [(w.start, w.end) for w in cut] == [
        ("2026-11-29T13:00:00", "2026-11-29T23:59:59"),
        ("2026-11-30T00:00:00", "2026-11-30T23:59:59"),
        ("2026-12-01T00:00:00", "2026-12-01T01:00:00"),
    ]
    assert windows_between("2026-11-29T13:00:00", "2026-11-29T13:00:00", 6) == [
        Window("2026-11-29T13:00:00", "2026-11-29T13:00:00")
    ]
    assert windows_between("2026-11-29T00:00:00", "2026-11-29T13:00:00", 6)[-1] == Window(
        "2026-11-29T12:00:00", "2026-11-29T13:00:00"
    )
    out = tmp_path / "out"
    stamps = out / ".dsa110ms-output" / "published"
    stamps.mkdir(parents=True)
    for gid in ("2026-11-29T12:00:00", "2026-11-30T12:00:00"):
        (stamps / f"{gid}.json").write_text("{}")
        (out / f"{gid}.ms").mkdir()
    (stamps / "2026-12-01T12:00:00.json").write_text("{}")  # a stamp without its MS
    assert published_ids(out) == {"2026-11-29T12:00:00", "2026-11-30T12:00:00"}
    assert published_ids(tmp_path / "none") == set()
    # the ledger: a window is done while its names and published MSs are as when it ran
    d = tmp_path / "in"
    d.mkdir()
    for name in ("2026-11-29T12:00:00_sb00.hdf5", "2026-11-30T12:00:00_sb00.hdf5"):
        (d / name).write_text("")
    inventory = Inventory(tmp_path / "inventory.sqlite")
    inventory.refresh_listing(d)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    from dsa110ms.batch import Outcome

    for w, gid in zip(windows[:2], ("2026-11-29T12:00:00", "2026-11-30T12:00:00"), strict=True):
        ledger.window_started(w, inventory.fingerprint(d, *w.names_between(60)))
        ledger.record_groups(w, {gid: Outcome("published")})
        ledger.window_finished(w, "done")
    ledger.record_empty(windows[2])
    published = published_ids(out)
    assert ledger.done_windows(windows, inventory, d, 60, published) == {w.start for w in windows}
    (d / "2026-11-30T12:05:00_sb01.hdf5").write_text("")  # a late file in window 2
    inventory.refresh_listing(d)
    assert ledger.done_windows(windows, inventory, d, 60, published) == {
        windows[0].start,
        windows[2].start,
    }
    # a file renamed (mislabelled) in window 1: the same count, not the same names
    os.rename(d / "2026-11-29T12:00:00_sb00.hdf5", d / "2026-11-29T13:00:00_sb00.hdf5")
    inventory.refresh_listing(d)
    assert ledger.done_windows(windows, inventory, d, 60, published) == {windows[2].start}
    os.rename(d / "2026-11-29T13:00:00_sb00.hdf5", d / "2026-11-29T12:00:00_sb00.hdf5")
    inventory.refresh_listing(d)
    published.discard("2026-11-29T12:00:00")  # its MS gone
    assert ledger.done_windows(windows, inventory, d, 60, published) == {windows[2].start}


def test_an_unusable_ledger_is_one_line(tmp_path):
    from dsa110ms.ledger import LedgerError

    path = tmp_path / "ledger.sqlite"
    path.write_text("garbage, not SQLite\n" * 10)
    with pytest.raises(LedgerError, match="cannot be used.*move it aside"):
        Ledger(path)
    later = tmp_path / "later.sqlite"
    with sqlite3.connect(later) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(LedgerError, match="another version of dsa110ms"):
        Ledger(later)
