"""Every way a run ends cleans up (issue 19, C): an input that vanishes mid-run (Snakemake's
WorkflowError skips onerror), a run with nothing to do after a killed one (Snakemake runs no
hook), Ctrl-C twice (as ``timeout`` sends it), SIGTERM and SIGHUP to the run's process group
during the join. After each: no scratch, no staging MS, the summary, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dsa110ms import space
from dsa110ms.groups import discover
from dsa110ms.run import scratch

from .conftest import leftovers, mounted_tmpfs, run_snakemake, snakemake_command, staging_left
from .test_robustness import small_config, small_groups, wait_for

TINY = {"n_antennas": 6, "n_integrations": 2}


def leave_scratch_as_a_killed_run(root, workdir) -> None:
    """What a run killed outright (SIGKILL, power loss) leaves: its instance directory, owner
    lock file (free: the process is dead) and a part."""
    code = textwrap.dedent(
        f"""
        from dsa110ms.run import scratch
        layout = scratch.ScratchLayout.for_workdir({str(root)!r}, {str(workdir)!r})
        scratch.acquire_instance(layout)
        (layout.group_dir("g") / "x_sb00.part").mkdir(parents=True)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_input_vanishing_mid_run_then_a_run_with_nothing_to_do(tmp_path, scratch_root):
    """Issue 19 C.1: an input deleted before its part job starts makes Snakemake raise
    WorkflowError, and onerror never runs: 275 files stayed in /dev/shm. Now the run removes
    its scratch at exit (verified) with the summary. Then a run killed outright leaves scratch,
    and the next run has nothing to do (no hook runs): it removes what was left and says so."""
    d = tmp_path / "in"
    ids = small_groups(d, 2, **TINY)
    groups = {g.id: g for g in discover(d, incomplete_groups="convert")}
    config = small_config(d, tmp_path / "out", scratch_root)
    cmd = snakemake_command(
        tmp_path, "--cores", "1", config={**config, "faults": {"part_delay_s": {"*/sb00": 2}}}
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    logs = tmp_path / "logs"
    wait_for(lambda: any(logs.glob("*/part_sb*.log")), what="a part job")
    (started,) = {p.parent.name for p in logs.glob("*/part_sb*.log")}  # one core: one job
    (other,) = set(ids) - {started}
    vanished = Path(groups[other].files[15])
    vanished.unlink()
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0
    assert "WorkflowError" in out and str(vanished) in out
    assert "the run stopped without its end-of-run hook" in out
    assert "[dsa110ms] run summary:" in out and "removed and verified gone" in out
    assert leftovers(scratch_root) == [] and staging_left(tmp_path / "out") == []

    leave_scratch_as_a_killed_run(scratch_root, tmp_path)
    proc = run_snakemake(tmp_path, "--cores", "1", config={**config, "groups": [started]})
    assert "Nothing to be done" in proc.stdout
    layout = scratch.ScratchLayout.for_workdir(scratch_root, tmp_path)
    assert f"2 entries of scratch {layout.instance_dir}" in proc.stdout, proc.stdout[-2000:]
    assert leftovers(scratch_root) == []


def start_until_a_join(workdir: Path, config: dict, *args: str) -> subprocess.Popen:
    """A run on one core in a session of its own (signals go to its process group), once one
    of its joins is under way."""
    cmd = snakemake_command(workdir, "--cores", "1", *args, config=config)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    wait_for(
        lambda: any("joining" in p.read_text() for p in (workdir / "logs").glob("*/concat.log")),
        what="a join",
    )
    return proc


def summary_statuses(summary: str, ids) -> dict[str, str]:
    """Each group's status in the run summary's table."""
    rows = [line.split() for line in summary.splitlines()]
    return {row[0]: row[1] for row in rows if row and row[0] in ids}


@pytest.mark.parametrize(
    "signals",
    [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM,), (signal.SIGHUP,)],
    ids=["ctrl-c-twice", "sigterm", "sighup"],
)
def test_stopping_the_run_during_the_join_leaves_nothing(signals, tmp_path, scratch_root):
    """Issue 19 C.2, C.3: Ctrl-C twice during the join (or once under `timeout`) ended in
    "event loop is already running" tracebacks, no summary and scratch left; SIGTERM to the
    process group left the staging MS. SIGHUP killed the run with no cleanup at all. The other
    group, whose jobs had not all run, said FAILED "not run"; it is stopped with the run too."""
    d = tmp_path / "in"
    ids = small_groups(d, 2, **TINY)
    config = small_config(d, tmp_path / "out", scratch_root, faults={"concat_delay_s": 60})
    proc = start_until_a_join(tmp_path, config)
    logs = tmp_path / "logs"
    assert staging_left(tmp_path / "out"), "the join writes its staging MS"
    for sig in signals:
        os.killpg(proc.pid, sig)
        time.sleep(0.3)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0
    assert "Traceback" not in out and "event loop" not in out, out[-3000:]
    assert "[dsa110ms] run summary:" in out and "removed and verified gone" in out, out[-3000:]
    # the group's row says the run was stopped, not that an input failed
    summary = out[out.rindex("run summary:") :]
    assert "stopped by SIG" in summary and "FAILED" not in summary, summary
    statuses = summary_statuses(summary, ids)
    assert set(statuses) == set(ids) and set(statuses.values()) <= {"stopped", "converted"}, summary
    assert (
        "stopped by SIG"
        in (logs / next(logs.glob("*/concat.log")).parent.name / "concat.log").read_text()
    )
    assert leftovers(scratch_root) == [] and staging_left(tmp_path / "out") == []


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 7 MB tmpfs: scratch for about two of the tiny groups (~1.8 MB each on scratch)."""
    yield from mounted_tmpfs(tmp_path / "small", "7m")


def test_a_backlog_larger_than_scratch_converts_group_after_group(tmp_path, small_tmpfs):
    """Issue 19 C.4: six groups with scratch for about two failed, every group on every run
    (every template first, then parts on a full tmpfs). Every job now asks for a group's
    scratch against the free space at the start, earlier groups first: all six convert."""
    d = tmp_path / "in"
    ids = small_groups(d, 6, **TINY)
    config = small_config(d, tmp_path / "out", small_tmpfs / "dsa110ms")
    proc = run_snakemake(tmp_path, "--cores", "2", config=config)
    assert "[dsa110ms] run summary: 6 converted" in proc.stdout, proc.stdout[-3000:]
    assert sorted(p.stem for p in (tmp_path / "out").glob("*.ms")) == ids
    assert leftovers(small_tmpfs / "dsa110ms") == []


def test_a_part_killed_as_the_oom_killer_kills_is_one_line(tmp_path, scratch_root):
    """Issue 19 C.6: a part job killed by SIGKILL (the out-of-memory killer) left no line and
    no event: the summary said "not run (the run stopped first)". Its process now reports the
    killed child in one line, in the part's log, on stderr and as the group's error."""
    import json

    import yaml

    from dsa110ms.faults import FAULTS_ENV
    from dsa110ms.observe import metrics
    from dsa110ms.owned import remove_owned
    from dsa110ms.run.jobs import JobContext
    from dsa110ms.settings import Settings

    from .conftest import REPO

    d = tmp_path / "in"
    (gid,) = small_groups(d, 1, **TINY)
    (sb15,) = d.glob("*_sb15.hdf5")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update({k: str(v) for k, v in small_config(d, tmp_path / "out", scratch_root).items()})
    settings = Settings.from_config(config)
    env = dict(os.environ, **{FAULTS_ENV: json.dumps({"part_killed": [f"{gid}/sb15"]})})
    JobContext.export(settings, "inst", environ=env)
    layout = scratch.ScratchLayout(scratch_root, "inst")
    scratch.make_instance_dir(layout)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "dsa110ms.run.partjob", gid, sb15.name[:19], "15"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
    finally:
        remove_owned(layout.instance_dir, scratch_root)
    assert proc.returncode == 128 + 9
    line = f"part of {sb15}: killed by signal 9, SIGKILL (likely out of memory"
    assert proc.stderr.count("\n") == 1 and line in proc.stderr, proc.stderr
    (log,) = (tmp_path / "logs" / gid).glob("part_sb15_*.log")
    assert line in log.read_text()
    events = metrics.read_events(tmp_path / settings.metrics_dir, 0)
    facts = metrics.group_facts(events, gid, "inst")
    assert "likely out of memory" in facts["error"], facts


def test_a_job_under_a_memory_limit_says_out_of_memory(tmp_path):
    """Issue 19 C.6: the join under a memory limit said "unexpected ModuleNotFoundError: No
    module named '_image'" (casacore's import failing to map memory). A job that runs out of
    memory, or whose import fails under an address-space limit, says so in one line."""
    code = textwrap.dedent(
        f"""
        import resource, sys
        from dsa110ms.run.joblog import job_log
        soft = int(open("/proc/self/statm").read().split()[0]) * 4096 + (200 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (soft, resource.RLIM_INFINITY))
        with job_log({str(tmp_path / "a.log")!r}):
            if sys.argv[1] == "allocate":
                bytearray(1 << 30)
            else:
                raise ModuleNotFoundError("No module named '_image'")
        """
    )
    for how in ("allocate", "import"):
        proc = subprocess.run(
            [sys.executable, "-c", code, how], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 1
        (line,) = proc.stderr.splitlines()
        assert "ERROR dsa110ms: out of memory" in line, line


def test_scratch_too_small_for_the_template_is_one_line(tiny_tmpfs):
    """Issue 19 C.5: casacore aborted with an empty template.log on a scratch too small for the
    template; the template job now checks first (run/jobs.py template_job) with this line."""
    from dsa110ms.errors import ScratchError

    with pytest.raises(ScratchError) as caught:
        space.check_room(tiny_tmpfs / "dsa110ms" / "g", 10_000_000, "the group's template")
    assert str(caught.value).startswith(
        f"out of scratch space on {tiny_tmpfs} (3 MB free, the group's template needs ~10 MB)"
    )
    space.check_room(tiny_tmpfs, 1_000_000, "the group's template")  # fits: no error


def test_a_template_that_casacore_aborts_is_one_line(tmp_path, scratch_root):
    """casacore aborts the process on a write error (a full scratch): the template job's
    process, which waits for its forked writer, says so in one line, in template.log and in the
    summary, where the row said "not run (the run stopped first)" and the log was empty."""
    d = tmp_path / "in"
    (gid,) = small_groups(d, 1, n_antennas=4, n_integrations=2)
    config = small_config(d, tmp_path / "out", scratch_root)
    foreign = tmp_path / "out" / f"{gid}.ms"  # not ours: the failed conversion cannot replace it
    foreign.mkdir(parents=True)
    proc = run_snakemake(
        tmp_path,
        "--cores",
        "2",
        config={**config, "faults": {"template_abort": ["*"]}},
        check=False,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stdout, proc.stdout[-3000:]
    (row,) = [x for x in proc.stdout.splitlines() if x.strip().startswith(gid)]
    assert "FAILED" in row and "killed by signal 6, SIGABRT (casacore aborts" in row, row
    assert "MB free on scratch" in row and "is not an intact MS of this workflow" in row, row
    assert '"groups_failed": 1' in (tmp_path / "logs" / "metrics" / "runs.jsonl").read_text()
    log = (tmp_path / "logs" / gid / "template.log").read_text()
    assert "ERROR template of" in log and "SIGABRT" in log, log


def test_ctrl_c_while_a_job_starts_ends_it_without_a_traceback():
    """Ctrl-C reaches every job of the terminal's process group; one still importing its
    libraries (a part job: ~0.3 s of its ~0.5 s) ended in a KeyboardInterrupt traceback on the
    terminal. Until its own handlers are set, it ends as killed by SIGINT, silently."""
    code = (
        "from dsa110ms.run.jobstart import quiet_ctrl_c_while_starting\n"
        "quiet_ctrl_c_while_starting()\n"
        "print('importing', flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "importing\n"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGINT and err == ""


@pytest.mark.parametrize("process", ["job", "main"])
def test_a_stop_landing_in_a_weakref_callback_still_stops(process):
    """Hostile trial: a Ctrl-C whose handler ran inside a weakref callback (asyncio's WeakSets
    in Snakemake's main process) raised there; Python printed "Exception ignored in ..." with
    a traceback and dropped the exception, and the process ran on, deaf to further stops (its
    handler already set to ignore or only report repeats). Now the stop is raised again."""
    code = textwrap.dedent(
        f"""
        import contextlib, os, signal, time, weakref
        from dsa110ms.run import hooks, joblog
        if {process == "main"}:
            hooks.stop_handlers()
        def callback(ref):
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(100000))  # the handler runs here, inside the callback
        class Dropped:
            pass
        start = time.monotonic()
        try:
            with joblog.stop_signals_raise() if {process == "job"} else contextlib.nullcontext():
                dropped = Dropped()
                ref = weakref.ref(dropped, callback)
                del dropped
                time.sleep(30)
            print("ran on")
        except (joblog.JobStopped, KeyboardInterrupt) as exc:
            print(type(exc).__name__, time.monotonic() - start < 5)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    stop = "JobStopped" if process == "job" else "KeyboardInterrupt"
    assert proc.stdout == f"{stop} True\n" and proc.stderr == "", proc


def test_a_dropped_stop_in_an_exit_handler_or_a_stale_one_is_not_sent_again():
    """Hostile trial of the re-delivery: a Ctrl-C in an exit handler (reported through the same
    hook) was sent again silently, breaking every later exit handler; a stale KeyboardInterrupt
    (the first Ctrl-C's, raised again by a ``__del__``) re-armed Ctrl-C inside Snakemake's
    cleanup. Both are now reported as Python reports them, and nothing is sent again."""
    code = textwrap.dedent(
        """
        import atexit, os, signal, time
        from dsa110ms.run import hooks
        hooks.stop_handlers()
        hooks._phase = "started"
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt as caught:  # Snakemake catches the first Ctrl-C
            stale = caught
        time.sleep(0.6)
        class Stale:
            def __del__(self):
                raise stale
        Stale()
        print("on", flush=True)
        def late():
            print("late handler done", flush=True)
        def interrupted():  # a first Ctrl-C during an exit handler
            signal.signal(signal.SIGINT, hooks._first_interrupt)
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(100000))
        atexit.register(late)
        atexit.register(interrupted)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout == "on\nlate handler done\n", proc
    assert "Exception ignored in: <function Stale.__del__" in proc.stderr, proc.stderr
    assert "Exception ignored in atexit callback" in proc.stderr, proc.stderr


def test_ctrl_c_after_a_part_crashed_keeps_its_group_failed(tmp_path, scratch_root):
    """Hostile trial: a Ctrl-C relabelled every group without an MS "stopped", a group whose
    part job had crashed (which leaves no event of ours) included, and no alert was sent."""
    d = tmp_path / "in"
    ids = small_groups(d, 3, **TINY)
    crashed = sorted(ids)[0]
    faults = {"part_crash": [f"{crashed}/sb15"], "concat_delay_s": 30}
    config = small_config(d, tmp_path / "out", scratch_root, faults=faults)
    proc = start_until_a_join(tmp_path, config, "--keep-going")
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    summary = out[out.rindex("run summary:") :]
    statuses = summary_statuses(summary, ids)
    assert statuses[crashed] == "FAILED", summary
    assert {statuses[g] for g in ids if g != crashed} == {"stopped"}, summary
    assert leftovers(scratch_root) == [] and staging_left(tmp_path / "out") == []


def test_sigterm_while_a_failed_run_cleans_up_keeps_its_groups_failed(tmp_path, scratch_root):
    """Hostile trial: a SIGTERM to Snakemake while the end of an already failed run was under
    way (Snakemake's handler stays installed) relabelled its not-run groups "stopped", so the
    alert counted one failed group of three."""
    d = tmp_path / "in"
    ids = small_groups(d, 3, **TINY)
    crashed = sorted(ids)[0]
    faults = {"part_crash": [f"{crashed}/sb15"], "cleanup_permission_error": True}
    config = small_config(d, tmp_path / "out", scratch_root, faults=faults)
    # without keep-going: the crash stops the run before the other groups
    no_profile = ("--workflow-profile", "none", "--nolock", "--scheduler", "greedy")
    cmd = snakemake_command(tmp_path, "--cores", "1", *no_profile, config=config)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    for line in proc.stdout:
        out.append(line)
        if "failed (attempt 1)" in line:  # the end of the run, removing scratch
            proc.send_signal(signal.SIGTERM)
            break
    out = "".join(out) + proc.communicate(timeout=120)[0]
    summary = out[out.rindex("run summary:") :]
    assert set(summary_statuses(summary, ids).values()) == {"FAILED"}, summary
    assert leftovers(scratch_root) == [] and staging_left(tmp_path / "out") == []
