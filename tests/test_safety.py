"""The three promises, each tried the way a careless or unlucky operator would (issue 12), with
real Snakemake runs: we remove only what we created, paths are data, a published MS is never
lost. Each test reproduces a finding of a hostile trial of b28d1f5."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dsa110ms.ms.publish import STAMP_NAME, OutputArea, damage
from dsa110ms.run.scratch import ScratchLayout, acquire_instance

from .conftest import (
    WITHOUT_DAC_OVERRIDE,
    leftovers,
    run_snakemake,
    snakemake_command,
    staging_left,
    visible,
)
from .test_robustness import assert_matches_input, small_config, small_groups, wait_for

#: Shell metacharacters, a space and unicode in one name. The command substitutions would
#: create ``pwned-*`` files in the working directory if the name ever reached a shell unquoted.
#: (Braces are refused by the config: Snakemake reads them as wildcards, see
#: test_braces_in_a_directory_are_one_line.)
HOSTILE = 'it\'s "odd"; $(touch pwned-1) `touch pwned-2` ü'


def test_shared_scratch_root_keeps_other_peoples_entries_and_mode(tmp_path):
    """Finding 1: scratch_root is a shared directory (mode 1777, as /dev/shm) holding another
    program's directory older than 5 minutes without a lock file, and a dead run of ours. The
    run removes only the dead run's scratch, and never chmods the root."""
    d = tmp_path / "in"
    (gid,) = small_groups(d, 1, start="2026-07-01T00:00:00")
    root = Path("/dev/shm") / f"dsa110ms-shared-{os.getpid()}"
    root.mkdir(mode=0o700)
    root.chmod(0o1777)
    try:
        precious = root / "precious"
        (precious / "sub").mkdir(parents=True)
        (precious / "sub" / "data").write_text("someone else's")
        old = time.time() - 3600
        os.utime(precious, (old, old))
        dead = ScratchLayout.for_workdir(root, tmp_path / "dead-run")
        acquire_instance(dead).release()  # a run of ours that died: its lock is free
        config = small_config(d, tmp_path / "out", root)
        proc = run_snakemake(tmp_path, "--cores", "2", config=config)
        assert_matches_input(tmp_path / "out" / f"{gid}.ms", d, gid)
        assert (precious / "sub" / "data").read_text() == "someone else's"
        assert oct(root.stat().st_mode & 0o7777) == "0o1777"
        assert not dead.instance_dir.exists()
        assert f"removed stale scratch {dead.instance_dir}" in proc.stdout
        assert "precious" not in proc.stdout
        assert sorted(p.name for p in root.iterdir()) == ["precious"]
    finally:
        subprocess.run(["rm", "-rf", "--", str(root)], check=True)


@pytest.mark.parametrize("join_method", ["direct", "concat"])
def test_paths_with_shell_metacharacters_are_data(join_method, tmp_path, scratch_root):
    """Finding 2: every directory of the run holds quotes, ``;``, ``$()``, backticks, a space
    and unicode. The group converts exactly, and nothing a path says is executed. The reference
    join (casatasks.concat, which splits table names on spaces) gets the same names without the
    spaces, and refuses spaces with one line."""
    name = HOSTILE if join_method == "direct" else HOSTILE.replace(" ", "_")
    if join_method == "concat":
        config = small_config(tmp_path, tmp_path / HOSTILE, scratch_root, join_method="concat")
        proc = run_snakemake(tmp_path, "-n", config=config, check=False)
        assert proc.returncode != 0
        assert "dsa110ms: error: config key output_dir:" in proc.stdout
        assert "casatasks.concat cannot handle" in proc.stdout
    base = tmp_path / name
    d = base / "in"
    (gid,) = small_groups(d, 1, start="2026-07-02T00:00:00")
    work = base / "work"
    work.mkdir()
    out = base / "out"
    config = small_config(
        d,
        out,
        scratch_root / name,
        join_method=join_method,
        log_dir=str(base / "logs"),
        report_dir=str(base / "report"),
        metrics_dir=str(base / "metrics"),
    )
    run_snakemake(work, "--cores", "2", config=config)
    assert_matches_input(out / f"{gid}.ms", d, gid)
    assert (base / "logs" / gid / "concat.log").is_file()
    assert (base / "report" / "groups.html").is_file()
    assert list(tmp_path.rglob("pwned-*")) == [] and not list(Path.cwd().glob("pwned-*"))
    assert leftovers(scratch_root / name) == []
    (scratch_root / name).rmdir()  # the root is the user's: the workflow never removes it


def log_says(log: Path, text: str) -> bool:
    """``log`` exists and holds ``text`` (Snakemake removes a job's log when it starts it)."""
    try:
        return text in log.read_text()
    except FileNotFoundError:
        return False


def _watch_ms(ms: Path, group: str, seen: list, stop: threading.Event) -> None:
    """Record, every 20 ms, whether ``ms`` is an intact published MS of ``group``."""
    while not stop.is_set():
        seen.append(os.path.isdir(ms) and damage(ms, group) is None)
        time.sleep(0.02)


def test_a_second_run_never_removes_the_first_runs_ms(tmp_path, scratch_root):
    """Finding 3: run A and, 3 s later, run B in another working directory, same input and
    output. B's join waits for A's (the group's lock), finds A's MS and keeps it; B killed
    while it waits, or a forced rerun, never removes it. Once A's MS is there it stays there,
    intact, at every instant."""
    d = tmp_path / "in"
    (gid,) = small_groups(d, 1, start="2026-07-03T00:00:00")
    out = tmp_path / "out"
    ms = out / f"{gid}.ms"
    work_a, work_b = tmp_path / "a", tmp_path / "b"
    work_a.mkdir()
    work_b.mkdir()
    config_a = small_config(d, out, scratch_root, faults={"concat_delay_s": 12})
    config_b = small_config(d, out, scratch_root)
    a = subprocess.Popen(
        snakemake_command(work_a, "--cores", "2", config=config_a),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(3)
    b = subprocess.Popen(
        snakemake_command(work_b, "--cores", "2", config=config_b),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: list[bool] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_ms, args=(ms, gid, seen, stop))
    watcher.start()
    try:
        concat_b = work_b / "logs" / gid / "concat.log"
        wait_for(lambda: log_says(concat_b, "waiting"), what="B to wait")
        out_a = a.communicate(timeout=300)[0]
        assert a.returncode == 0, out_a[-3000:]
        out_b = b.communicate(timeout=300)[0]
        assert b.returncode == 0, out_b[-3000:]
        assert "is published and intact; kept" in concat_b.read_text()

        # B again, forced, killed while it waits for a join that holds the group's lock
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time\n"
                "from dsa110ms.ms.publish import OutputArea\n"
                "with OutputArea.of(sys.argv[1]).group_lock(sys.argv[2]):\n"
                "    print('held', flush=True); time.sleep(600)\n",
                str(out),
                gid,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout.readline().strip() == "held"
        b = subprocess.Popen(
            snakemake_command(work_b, "--cores", "2", "--forcerun", "concat", config=config_b),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: log_says(concat_b, "waiting"), what="B to wait again")
        os.killpg(b.pid, signal.SIGKILL)
        b.wait()
        holder.kill()
        holder.wait()
        # a forced rerun of every job: Snakemake removes the declared outputs first
        run_snakemake(work_b, "--cores", "2", "--forceall", config=config_b)
        assert "is published and intact; kept" in concat_b.read_text()
    finally:
        stop.set()
        watcher.join()
    first = seen.index(True)
    assert all(seen[first:]), "the published MS disappeared or was incomplete at some instant"
    assert_matches_input(ms, d, gid)
    assert visible(out) == [f"{gid}.ms"] and staging_left(out) == []


def _group_processes(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


def test_jobs_die_with_the_main_process_and_an_immediate_rerun_is_correct(tmp_path, scratch_root):
    """Finding 4: SIGKILL of the main Snakemake process only (not its jobs) during the join.
    Its jobs die at once (none lives on to publish or remove parts under a rerun); an immediate
    plain rerun publishes the correct MSs and leaves nothing stale. (Part jobs watch their run
    the same way, but take too little time here to be caught alive.)"""
    d = tmp_path / "in"
    ids = small_groups(d, 2, start="2026-07-04T00:00:00")
    config = small_config(d, tmp_path / "out", scratch_root, faults={"concat_delay_s": 60})
    proc = subprocess.Popen(
        snakemake_command(tmp_path, "--cores", "2", config=config),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    logs = tmp_path / "logs"
    wait_for(lambda: any(log_says(p, "joining") for p in logs.glob("*/concat.log")), what="a join")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(lambda: _group_processes(proc.pid) == [], timeout=10, what="the jobs to die")

    config.pop("faults")
    run_snakemake(tmp_path, "--cores", "2", config=config)
    out = tmp_path / "out"
    for gid in ids:
        assert_matches_input(out / f"{gid}.ms", d, gid)
    assert visible(out) == sorted(f"{g}.ms" for g in ids) and staging_left(out) == []


def test_a_full_output_file_system_is_a_clean_named_failure(tmp_path, scratch_root, tiny_tmpfs):
    """Finding 5: the MS does not fit in output_dir. The join fails before writing, with one
    line naming ENOSPC and the file system; nothing is left in the output; the summary counts
    the attempts."""
    d = tmp_path / "in"
    (gid,) = small_groups(d, 1, start="2026-07-05T00:00:00", n_antennas=24)
    proc = run_snakemake(
        tmp_path, "--cores", "2", config=small_config(d, tiny_tmpfs, scratch_root), check=False
    )
    assert proc.returncode != 0
    errors = [
        line
        for line in (tmp_path / "logs" / gid / "concat.log").read_text().splitlines()
        if " ERROR " in line
    ]
    assert errors and all("ENOSPC" in e and str(tiny_tmpfs) in e for e in errors), errors
    assert visible(tiny_tmpfs) == [] and staging_left(tiny_tmpfs) == []
    (row,) = [line for line in proc.stdout.splitlines() if line.strip().startswith(gid)]
    assert "FAILED" in row and "ENOSPC" in row and " 2 " in row, row  # 3 attempts: 2 retries


def test_a_join_process_aborted_by_casacore_leaves_no_staging_and_is_retried(
    tmp_path, scratch_root
):
    """Finding 5: casacore aborts the join process (std::terminate on a write error, SIGABRT:
    no Python cleanup runs in it). The job still removes the staging MS, names the signal, and
    the retry publishes."""
    d = tmp_path / "in"
    (gid,) = small_groups(d, 1, start="2026-07-06T00:00:00")
    config = small_config(
        d, tmp_path / "out", scratch_root, faults={"concat": {gid: {"1": "abort"}}}
    )
    proc = run_snakemake(tmp_path, "--cores", "2", config=config)
    assert "the join process died (killed by SIGABRT)" in proc.stdout
    assert_matches_input(tmp_path / "out" / f"{gid}.ms", d, gid)
    assert staging_left(tmp_path / "out") == []


def test_a_subband_duplicating_anothers_frequencies_fails_once_naming_the_file(
    tmp_path, scratch_root
):
    """Finding 7: a file labelled sb00 that holds sb15's channels. The join fails permanently
    (not retried), naming that file, and the summary names it too."""
    d = tmp_path / "in"
    (gid,) = small_groups(d, 1, start="2026-07-07T00:00:00")
    (sb00,), (sb15,) = d.glob("*_sb00.hdf5"), d.glob("*_sb15.hdf5")
    sb00.write_bytes(sb15.read_bytes())
    proc = run_snakemake(
        tmp_path,
        "--cores",
        "2",
        config=small_config(d, tmp_path / "out", scratch_root),
        check=False,
    )
    assert proc.returncode != 0
    log = (tmp_path / "logs" / gid / "concat.log").read_text()
    assert "overlap those of" in log and "permanent: attempt 3 not tried" in log
    (row,) = [line for line in proc.stdout.splitlines() if line.strip().startswith(gid)]
    assert "FAILED" in row and "overlap" in row and ".hdf5" in row, row


@pytest.mark.parametrize("problem", ["symlink", "file", "not-writable"])
def test_start_failures_are_one_line(problem, tmp_path, scratch_root):
    """Finding 7: scratch_root is a symlink or cannot be written, output_dir is a file: one
    line naming the path, no traceback, no job run."""
    d = tmp_path / "in"
    small_groups(d, 1, start="2026-07-08T00:00:00")
    out, root, prefix = tmp_path / "out", scratch_root, ()
    if problem == "symlink":
        real = tmp_path / "real-scratch"
        real.mkdir()
        scratch_root.symlink_to(real)
        expected = f"scratch_root {scratch_root}: is a symlink"
    elif problem == "file":
        out.write_text("a file, not a directory")
        expected = f"output_dir {out} is not a directory"
    else:
        scratch_root.mkdir(mode=0o755)
        os.chown(scratch_root, 65534, 65534)
        root = scratch_root / "sub"
        prefix = WITHOUT_DAC_OVERRIDE
        expected = f"scratch_root {root}: cannot create it"
    proc = run_snakemake(
        tmp_path,
        "--cores",
        "2",
        config=small_config(d, out, root),
        check=False,
        prefix=prefix,
    )
    assert proc.returncode != 0
    lines = [x for x in proc.stdout.splitlines() if x.startswith("dsa110ms: error:")]
    assert len(lines) == 1 and expected in lines[0], proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout and "Finished jobid" not in proc.stdout
    if problem == "symlink":
        scratch_root.unlink()


def test_a_damaged_published_ms_is_converted_again_and_set_aside(tmp_path, scratch_root):
    """Finding 8: a subtable of a published MS deleted by hand. The rerun finds it damaged
    (the stamp lists every table and the size of every column file), converts the group again
    and sets the damaged MS aside, never deleting it. Calibrating in place (a flag changed, a
    column added) is not damage: nothing is converted again."""
    from casacore import tables

    d = tmp_path / "in"
    (gid,) = small_groups(d, 1, start="2026-07-09T00:00:00")
    config = small_config(d, tmp_path / "out", scratch_root)
    run_snakemake(tmp_path, "--cores", "2", config=config)
    ms = tmp_path / "out" / f"{gid}.ms"
    with tables.table(str(ms), readonly=False, ack=False) as tb:
        flags = tb.getcol("FLAG")
        flags[0] = True
        tb.putcol("FLAG", flags)
        desc = tables.makearrcoldesc("SCRATCH_COLUMN", 0.0, ndim=1)
        tb.addcols(tables.maketabdesc(desc))
    proc = run_snakemake(tmp_path, "--cores", "2", config=config)
    assert "Nothing to be done" in proc.stdout, "calibrating in place is not damage"

    subprocess.run(["rm", "-r", str(ms / "FIELD")], check=True)
    assert damage(ms, gid) == "FIELD/table.dat is missing (it was published with it)"
    proc = run_snakemake(tmp_path, "--cores", "2", config=config)
    assert f"{ms}: FIELD/table.dat is missing" in proc.stdout
    assert_matches_input(ms, d, gid)
    (aside,) = ms.parent.glob(f"{gid}.ms.invalid-*")
    assert (aside / STAMP_NAME).is_file() and not (aside / "FIELD").exists()
    assert staging_left(tmp_path / "out") == []


@pytest.mark.parametrize("target", ["simulate", "all"])
def test_braces_in_a_directory_are_one_line(target, tmp_path):
    """Finding 7: input_dir holding ``{x}`` (Snakemake reads braces as wildcards, with no escape
    in patterns) ended in a RuleException about rule simulate: now one line naming the key."""
    config = {"input_dir": tmp_path / "data{x}", "output_dir": tmp_path / "out"}
    proc = run_snakemake(tmp_path, target, "--cores", "1", config=config, check=False)
    assert proc.returncode != 0
    lines = [x for x in proc.stdout.splitlines() if x.startswith("dsa110ms: error:")]
    assert len(lines) == 1 and "config key input_dir:" in lines[0] and "{ or }" in lines[0]
    assert "Traceback" not in proc.stdout and "RuleException" not in proc.stdout


def test_staging_of_dead_joins_is_removed_whoever_left_it_and_live_ones_are_kept(tmp_path):
    """A join killed outright (its process and its run) leaves its staging MS; the next run
    from *any* working directory removes it, unless a live join of that group holds its lock."""
    area = OutputArea.of(tmp_path / "out")
    for instance, group in (("dead-1234567890", "2026-07-10T00:00:00"), ("live.x", "g2")):
        ms = area.new_staging(instance, group)
        ms.mkdir()
        (ms / "table.dat").write_text("partial")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from dsa110ms.ms.publish import OutputArea\n"
            "with OutputArea.of(sys.argv[1]).group_lock('g2'):\n"
            "    print('held', flush=True); time.sleep(600)\n",
            str(area.output_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        removed = area.remove_stale_staging()
    finally:
        holder.kill()
        holder.wait()
    assert removed == [area.staging_dir("dead-1234567890", "2026-07-10T00:00:00")]
    assert area.staging_dir("live.x", "g2").is_dir()
    assert area.remove_stale_staging() == [area.staging_dir("live.x", "g2")]


def test_a_report_dir_holding_other_files_is_refused_and_left_alone(tmp_path, scratch_root):
    """Hostile trial: report_dir pointed at a directory of the user's; Snakemake would empty
    its plots/ and replace its groups.html. Refused with one line; nothing there changes."""
    d = tmp_path / "in"
    small_groups(d, 1, start="2026-07-11T00:00:00")
    mine = tmp_path / "mine"
    (mine / "plots").mkdir(parents=True)
    (mine / "plots" / "fig1.png").write_text("a figure")
    (mine / "groups.html").write_text("<html>my groups</html>")
    config = small_config(d, tmp_path / "out", scratch_root, report_dir=str(mine))
    proc = run_snakemake(tmp_path, "--cores", "2", config=config, check=False)
    assert proc.returncode != 0
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("dsa110ms: error:")]
    assert f"report_dir {mine}: holds" in line
    assert (mine / "plots" / "fig1.png").read_text() == "a figure"
    assert (mine / "groups.html").read_text() == "<html>my groups</html>"


def test_one_directory_as_working_dir_output_and_scratch_root(tmp_path):
    """Hostile trial: output_dir = scratch_root = the working directory, through a symlink.
    Each run's state stays apart (the sweep removes only scratch instances, never the output's
    state); an MS copied over another group's path is set aside and converted again; a run with
    other options keeps the MSs and says so."""
    d = tmp_path / "in"
    ids = small_groups(d, 2, start="2026-07-12T00:00:00")
    real = tmp_path / "real"
    real.mkdir()
    shared = tmp_path / "shared"
    shared.symlink_to(real)
    config = small_config(d, shared, real)
    run_snakemake(real, "--cores", "2", config=config)
    state = OutputArea.of(shared).state_dir
    old = time.time() - 3600
    os.utime(state, (old, old))  # older than any grace period of the sweep
    first, second = (shared / f"{g}.ms" for g in ids)
    subprocess.run(["rm", "-r", str(second)], check=True)
    subprocess.run(["cp", "-a", str(first), str(second)], check=True)
    proc = run_snakemake(real, "--cores", "2", config=config)
    assert f"{second}: it holds group {ids[0]}, not {ids[1]}" in proc.stdout
    for gid in ids:
        assert_matches_input(shared / f"{gid}.ms", d, gid)
    assert len(list(real.glob(f"{ids[1]}.ms.invalid-*"))) == 1
    assert staging_left(shared) == [] and state.is_dir()
    proc = run_snakemake(real, "--cores", "2", config={**config, "spw_layout": "single"})
    assert (
        "made with other options (spw_layout per_subband, this run's single); kept" in proc.stdout
    )
    assert "Nothing to be done" in proc.stdout
