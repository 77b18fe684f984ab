"""Scratch ownership, verified removal and the stale sweep, with real processes and locks."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dsa110ms.errors import ScratchError
from dsa110ms.owned import make_owned_dir, remove_owned
from dsa110ms.run import node, scratch

from .conftest import hold_lock


def test_layout_is_deterministic_and_private(scratch_root, tmp_path):
    a = scratch.ScratchLayout.for_workdir(scratch_root, tmp_path)
    b = scratch.ScratchLayout.for_workdir(scratch_root, str(tmp_path) + "/")
    assert a == b
    assert a.instance.startswith(tmp_path.name[:20])
    part = a.part("2026-01-01T00:00:00", "2026-01-01T00:00:02_sb03")
    assert part.name == "2026-01-01T00:00:02_sb03.part"
    lock = scratch.acquire_instance(a)
    try:
        assert oct(a.instance_dir.stat().st_mode & 0o777) == "0o700"
        assert oct(scratch_root.stat().st_mode & 0o777) == "0o700"
        with pytest.raises(ScratchError, match="in use by a live run"):
            scratch.acquire_instance(a)
    finally:
        lock.release()
    remove_owned(a.instance_dir, scratch_root)


def test_sweep_spares_live_runs_and_removes_dead_ones(scratch_root, tmp_path):
    live = hold_lock(scratch_root, tmp_path / "live")
    dead = hold_lock(scratch_root, tmp_path / "dead")
    live_dir = scratch.ScratchLayout.for_workdir(scratch_root, tmp_path / "live").instance_dir
    dead_dir = scratch.ScratchLayout.for_workdir(scratch_root, tmp_path / "dead").instance_dir
    try:
        os.kill(dead.pid, signal.SIGKILL)  # dies without any cleanup, like a killed run
        dead.wait()
        report = scratch.sweep_stale(scratch_root)
        assert report.removed == [str(dead_dir)]
        assert report.live == [str(live_dir)]
        assert (live_dir / "g" / "sb00.part").is_dir()
        assert not dead_dir.exists()
    finally:
        live.kill()
        live.wait()
    assert scratch.sweep_stale(scratch_root).removed == [str(live_dir)]


def test_sweep_waits_before_removing_unlocked_young_dirs(scratch_root):
    make_owned_dir(scratch_root / "starting-0000000000", scratch.INSTANCE_KIND)
    report = scratch.sweep_stale(scratch_root)
    assert report.removed == [] and len(report.live) == 1
    old = time.time() - scratch.UNLOCKED_GRACE_S - 1
    os.utime(scratch_root / "starting-0000000000", (old, old))
    assert len(scratch.sweep_stale(scratch_root).removed) == 1


def test_remove_owned_removes_only_marked_entries_inside_root_never_through_symlinks(
    scratch_root, tmp_path
):
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data").write_text("keep me")
    scratch_root.mkdir()
    foreign = scratch_root / "foreign"  # not ours: no marker
    (foreign / "g").mkdir(parents=True)
    make_owned_dir(scratch_root / "inst", scratch.INSTANCE_KIND)
    (scratch_root / "inst" / "g").mkdir()
    (scratch_root / "inst" / "g" / "link").symlink_to(outside)
    (scratch_root / "inst" / "toplink").symlink_to(outside)
    (scratch_root / "inst-link").symlink_to(scratch_root / "inst")
    # a marker planted in someone else's directory through a symlink is not ours either
    (foreign / ".dsa110ms-owned").symlink_to(scratch_root / "inst" / ".dsa110ms-owned")

    for path, why in (
        (outside, "not inside"),
        (scratch_root, "not inside"),
        (foreign, "not created by this workflow"),
        (foreign / "g", "not created by this workflow"),
        (scratch_root / "inst" / "toplink" / "data", "not a real directory"),
        (scratch_root / "inst-link" / "g", "not a real directory"),
    ):
        with pytest.raises(ScratchError, match=why):
            remove_owned(path, scratch_root)
    assert remove_owned(scratch_root / "inst" / "g" / "link", scratch_root)  # the link only
    assert (outside / "data").read_text() == "keep me"
    assert remove_owned(scratch_root / "inst", scratch_root)
    assert not (scratch_root / "inst").exists()
    assert (outside / "data").read_text() == "keep me"
    assert (foreign / "g").is_dir()
    assert not remove_owned(scratch_root / "inst", scratch_root)  # gone: nothing to do
    for p in (foreign / ".dsa110ms-owned", foreign / "g", foreign, scratch_root / "inst-link"):
        p.unlink() if p.is_symlink() else p.rmdir()


def test_sweep_of_a_shared_root_touches_only_dead_instances_of_ours(tmp_path):
    """scratch_root: a shared, sticky, world-writable directory (as /dev/shm or /tmp) holding
    other programs' old directories: the sweep removes only a dead instance of ours and never
    changes the root's mode."""
    root = tmp_path / "shared"
    root.mkdir()
    root.chmod(0o1777)
    old = time.time() - 3600
    for name in ("precious", "dsa110ms-like-0123456789"):
        (root / name).mkdir()
        (root / name / "data").write_text("not yours")
        os.utime(root / name, (old, old))
    dead = scratch.ScratchLayout.for_workdir(root, tmp_path / "dead")
    scratch.acquire_instance(dead).release()  # a run that died: marked, lock free
    report = scratch.sweep_stale(root)
    assert report.removed == [str(dead.instance_dir)] and report.failed == []
    assert sorted(p.name for p in root.iterdir()) == ["dsa110ms-like-0123456789", "precious"]
    assert oct(root.stat().st_mode & 0o7777) == "0o1777"
    layout = scratch.ScratchLayout.for_workdir(root, tmp_path / "live")
    scratch.acquire_instance(layout).release()
    assert oct(root.stat().st_mode & 0o7777) == "0o1777", "an existing root is never chmod-ed"


def node_job_process(root, workdir, job: str, group: str):
    """A separate live process running cluster job ``job`` on this node, with ``group`` claimed
    (like the Snakemake process of a SLURM job whose part jobs have started)."""
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from dsa110ms.run import node, scratch
        layout = scratch.ScratchLayout.for_workdir({str(root)!r}, {str(workdir)!r})
        node.NodeJob.start(layout, {job!r})
        node.claim_group(layout.group_dir({group!r}), {{"SLURM_JOB_ID": {job!r}}})
        (layout.group_dir({group!r}) / "t_sb00.part").mkdir()
        print("started", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    return proc


def test_cluster_jobs_remove_their_groups_and_those_of_jobs_killed_on_the_node(
    scratch_root, tmp_path
):
    layout = scratch.ScratchLayout.for_workdir(scratch_root, tmp_path)
    killed = node_job_process(scratch_root, tmp_path, "101", "g1")
    live = node_job_process(scratch_root, tmp_path, "102", "g2")
    try:
        os.kill(killed.pid, signal.SIGKILL)  # the job's Snakemake dies without any cleanup
        killed.wait()
        # no main process owns this instance on the node, but a cluster job runs in it
        assert scratch.sweep_stale(scratch_root).live == [str(layout.instance_dir)]
        mine = node.NodeJob.start(layout, "103")  # the next job here sweeps the dead one's
        assert not layout.group_dir("g1").exists()
        assert (layout.group_dir("g2") / "t_sb00.part").is_dir()
        node.claim_group(layout.group_dir("g3"), {"SLURM_JOB_ID": "103"})
        (layout.group_dir("g3") / "t_sb01.part").mkdir()
        mine.finish()  # whatever the outcome: its groups and its lock are gone
        assert sorted(p.name for p in layout.instance_dir.iterdir()) == [
            ".cluster-job-102.lock",
            ".dsa110ms-owned",
            "g2",
        ]
    finally:
        live.kill()
        live.wait()
    assert scratch.sweep_stale(scratch_root).removed == [str(layout.instance_dir)]


def test_removal_never_follows_a_symlink_swapped_in_while_it_runs(tmp_path):
    """Hostile trial: while our instance directory is being cleaned, another process keeps
    swapping it for a symlink to a directory that is not ours. Checked and removed through
    directory descriptors, the removal never reaches that directory."""
    root = tmp_path / "root"
    root.mkdir()
    victim = tmp_path / "victim"
    (victim / "g").mkdir(parents=True)
    (victim / "g" / "data").write_text("not ours")
    inst = make_owned_dir(root / "inst", scratch.INSTANCE_KIND)
    swapper = textwrap.dedent(
        f"""
        import os, time
        inst, hold, victim = {str(inst)!r}, {str(root / "hold")!r}, {str(victim)!r}
        end = time.time() + 3
        while time.time() < end:
            os.rename(inst, hold); os.symlink(victim, inst); os.unlink(inst); os.rename(hold, inst)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", swapper])
    removed = refused = 0
    while proc.poll() is None:
        try:
            (inst / "g").mkdir(exist_ok=True)
            removed += remove_owned(inst / "g", root)
        except (OSError, ScratchError):
            refused += 1
    assert proc.returncode == 0
    assert (victim / "g" / "data").read_text() == "not ours"
    assert removed > 10 and refused > 10, (removed, refused)


def test_scratch_root_of_another_user_is_refused_unless_sticky_and_system(tmp_path):
    """Whoever owns the scratch root can rename our entries in it: a root of another user is
    refused; a sticky root of root's, as /dev/shm and /tmp, is fine."""
    other = tmp_path / "other"
    other.mkdir(mode=0o777)
    os.chown(other, 65534, 65534)
    with pytest.raises(ScratchError, match="owned by uid 65534"):
        scratch.check_root(other)
    scratch.check_root(Path("/dev/shm"))


def test_lock_files_are_never_written_through_links(tmp_path):
    """A lock file that is a hard link to someone's file is refused, not truncated."""
    precious = tmp_path / "precious.txt"
    precious.write_text("do not lose")
    os.link(precious, tmp_path / "x.lock")
    with pytest.raises(ScratchError, match="not a lock file"):
        scratch.OwnerLock.try_acquire(tmp_path / "x.lock", create=True)
    assert precious.read_text() == "do not lose"
