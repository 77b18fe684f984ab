"""Faults injected into real runs: lock errors, corrupt parts, cleanup failures, crashes, bad
input, interruptions, a full tmpfs, concurrent runs. After each, nothing partial is published and
scratch is empty."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from dsa110ms.groups import discover
from dsa110ms.ms.publish import is_published
from dsa110ms.simulate import SimulationSpec, group_start_times, simulate

from .conftest import (
    WITHOUT_DAC_OVERRIDE,
    leftovers,
    run_snakemake,
    snakemake_command,
    staging_left,
    visible,
)
from .msdata import expected_ms_data, read_ms, read_uvh5_raw

LOCK_KINDS = ("read_write", "bytes_read", "errno18", "errno39")


def small_groups(d: Path, n: int, start="2026-03-01T00:00:00", subbands=(0, 15), **spec) -> list:
    """n groups of two subbands (converted under incomplete_groups=convert)."""
    simulate(SimulationSpec(n_groups=n, subbands=subbands, start=start, **spec), d)
    return [g.id for g in discover(d, incomplete_groups="convert")]


def small_config(input_dir, output_dir, scratch_root, **extra) -> dict:
    """Workflow config for groups made by :func:`small_groups`."""
    return {
        "input_dir": input_dir,
        "output_dir": output_dir,
        "scratch_root": scratch_root,
        "incomplete_groups": "convert",
        **extra,
    }


def assert_matches_input(ms: Path, input_dir: Path, group_id: str):
    """Every SPW of the published MS equals its input file (the documented convention)."""
    (group,) = [g for g in discover(input_dir, incomplete_groups="convert") if g.id == group_id]
    cols = read_ms(ms)
    for spw, sb in enumerate(group.subbands_ascending_frequency()):
        rows = np.flatnonzero(cols.spw == spw)
        data, _, _ = expected_ms_data(cols, rows, read_uvh5_raw(group.files[sb]))
        np.testing.assert_array_equal(cols.data[rows], data)
    assert is_published(ms)


def last_run(work: Path) -> dict:
    lines = (work / "logs" / "metrics" / "runs.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def six_groups(tmp_path_factory):
    d = tmp_path_factory.mktemp("six")
    return d, small_groups(d, 6)


def test_injected_faults_are_retried_or_fail_cleanly(six_groups, tmp_path, scratch_root):
    """Groups 0-3: a different lock error on attempt 1 (retried, published). Group 4: a corrupt
    part (fails at once, not retried). Group 5: a part job crashes. Every scratch removal fails
    once with a permission error. The other groups convert (keep-going); then a plain rerun
    without faults converts the two failed groups."""
    input_dir, ids = six_groups
    faults = {
        "concat": {ids[k]: {"1": kind} for k, kind in enumerate(LOCK_KINDS)}
        | {ids[4]: {"1": "corrupt"}},
        "part_crash": [f"{ids[5]}/sb15"],
        "cleanup_permission_error": True,
    }
    alert = tmp_path / "alert.json"
    config = small_config(
        input_dir,
        tmp_path / "out",
        scratch_root,
        faults=faults,
        alert_command=f'echo "$DSA110MS_ALERT" > {alert}',
    )
    proc = run_snakemake(tmp_path, "--cores", "2", config=config, check=False)
    assert proc.returncode != 0
    out = tmp_path / "out"
    for gid in ids[:4]:
        assert_matches_input(out / f"{gid}.ms", input_dir, gid)
    assert not (out / f"{ids[4]}.ms").exists() and not (out / f"{ids[5]}.ms").exists()
    assert staging_left(out) == [], "no staging left"
    corrupt_log = (tmp_path / "logs" / ids[4] / "concat.log").read_text()
    assert "permanent: attempt 3 not tried" in corrupt_log

    run = last_run(tmp_path)
    assert run["groups_converted"] == 4 and run["groups_failed"] == 2
    assert sorted(run["failed_groups"]) == sorted(ids[4:])
    assert run["join_retries"] >= 4
    assert {"RuntimeError", "OSError.EXDEV", "OSError.ENOTEMPTY"} <= set(
        run["join_failures_by_class"]
    )
    # corrupt part: attempt 1 finds it, attempts 2 and 3 fail at once on the recorded failure
    assert run["join_failures_by_class"]["ValidationError"] == 1
    assert run["join_failures_by_class"]["JoinError"] == 2
    assert run["cleanup_retries"] >= 5 and run["cleanup_failures"] == 0
    prom = (tmp_path / "logs" / "metrics" / "dsa110ms.prom").read_text()
    assert "dsa110ms_last_run_groups_converted 4" in prom
    assert 'dsa110ms_last_run_join_failures{error_class="OSError.EXDEV"}' in prom
    assert json.loads(alert.read_text())["groups_failed"] == 2

    config.pop("faults")
    run_snakemake(tmp_path, "--cores", "2", config=config)
    for gid in ids[4:]:
        assert_matches_input(out / f"{gid}.ms", input_dir, gid)
    assert last_run(tmp_path)["groups_converted"] == 2


def test_bad_inputs_fail_with_one_line_reasons_and_others_convert(tmp_path, scratch_root):
    """Truncated file, non-HDF5 file, a subband with fewer integrations, an unreadable file:
    each group fails with a reason naming the file; the good group converts; an untrusted MS at
    a final path is set aside and replaced."""
    d = tmp_path / "in"
    ids = small_groups(d, 5, start="2026-04-01T00:00:00")
    groups = {g.id: g for g in discover(d, incomplete_groups="convert")}
    truncated = Path(groups[ids[0]].files[0])
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    not_hdf5 = Path(groups[ids[1]].files[15])
    not_hdf5.write_text("this is not an HDF5 file\n")
    fewer_times = Path(groups[ids[2]].files[15])
    fewer_times.unlink()
    other = tmp_path / "other"
    # its data start with the group's (to the bit: DSA-110's subbands share time_array[0]);
    # only its number of integrations differs
    start = group_start_times(SimulationSpec(n_groups=5, start="2026-04-01T00:00:00"))[2]
    spec = SimulationSpec(subbands=(15,), n_integrations=2, start=start.isoformat(), max_jitter_s=0)
    simulate(spec, other)
    (other / fewer_times.name.replace(fewer_times.name[:19], ids[2])).rename(fewer_times)
    unreadable = Path(groups[ids[3]].files[0])
    unreadable.chmod(0)
    out = tmp_path / "out"
    (out / f"{ids[4]}.ms").mkdir(parents=True)  # e.g. a copy that was cut off
    (out / f"{ids[4]}.ms" / "table.dat").write_text("partial")

    config = small_config(d, out, scratch_root)
    proc = run_snakemake(
        tmp_path, "--cores", "2", config=config, check=False, prefix=WITHOUT_DAC_OVERRIDE
    )
    assert proc.returncode != 0
    assert_matches_input(out / f"{ids[4]}.ms", d, ids[4])
    assert len(list(out.glob(f"{ids[4]}.ms.invalid-*"))) == 1
    assert [p for p in visible(out) if not p.startswith(ids[4])] == []

    def reason(group, log_glob):
        (log,) = (tmp_path / "logs" / group).glob(log_glob)
        lines = log.read_text().splitlines()
        (line,) = [x for x in lines if " ERROR " in x]
        return line

    assert str(truncated) in reason(ids[0], "part_sb00_*.log")
    # the end-of-run summary names the file each failed group failed on
    for gid, path in ((ids[0], truncated), (ids[1], not_hdf5), (ids[2], fewer_times)):
        (row,) = [x for x in proc.stdout.splitlines() if x.strip().startswith(gid)]
        assert "FAILED" in row and str(path) in row, row
    assert str(not_hdf5) in reason(ids[1], "part_sb15_*.log")
    line = reason(ids[2], "concat.log")
    assert str(fewer_times) in line and "number of times" in line
    # unreadable: found by discovery (Snakemake itself cannot record jobs on unreadable inputs)
    assert f"{unreadable}: not readable (permission denied); group {ids[3]} not converted" in (
        proc.stdout
    )


def test_unwritable_output_dir_fails_before_any_job(tmp_path, scratch_root):
    d = tmp_path / "in"
    small_groups(d, 1)
    out = tmp_path / "readonly"
    out.mkdir(mode=0o555)
    config = small_config(d, out, scratch_root)
    proc = run_snakemake(
        tmp_path, "--cores", "2", config=config, check=False, prefix=WITHOUT_DAC_OVERRIDE
    )
    assert proc.returncode != 0
    assert f"output_dir {out} is not writable" in proc.stdout
    assert "Finished jobid" not in proc.stdout, "no job ran"
    assert visible(out) == [] and staging_left(out) == []


def wait_for(predicate, timeout=120.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize(
    "sig, phase",
    [
        (signal.SIGINT, "parts"),
        (signal.SIGKILL, "parts"),
        (signal.SIGTERM, "concat"),
        (signal.SIGKILL, "concat"),
    ],
    ids=["sigint-parts", "sigkill-parts", "sigterm-concat", "sigkill-concat"],
)
def test_interrupted_run_then_plain_rerun(sig, phase, tmp_path, scratch_root):
    """Ctrl-C / SIGTERM / SIGKILL of the whole run (its process group) while parts are written
    or while a group is joined; then the documented plain command, `snakemake --cores 2`,
    completes with correct output and no stale scratch."""
    d = tmp_path / "in"
    ids = small_groups(d, 2, start="2026-05-01T00:00:00")
    config = small_config(
        d, tmp_path / "out", scratch_root, faults={"concat_delay_s": 60 if phase == "concat" else 0}
    )
    cmd = snakemake_command(tmp_path, "--cores", "2", config=config)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    logs = tmp_path / "logs"
    if phase == "parts":
        wait_for(lambda: any(logs.glob("*/part_sb*.log")), what="a part job")
    else:
        wait_for(
            lambda: any("joining" in p.read_text() for p in logs.glob("*/concat.log")),
            what="a join",
        )
    os.killpg(proc.pid, sig)
    proc.wait(timeout=120)
    out = tmp_path / "out"
    for ms in out.glob("*.ms") if out.exists() else []:
        assert is_published(ms), f"{ms} visible but not published"

    config.pop("faults")
    run_snakemake(tmp_path, "--cores", "2", config=config)
    for gid in ids:
        assert_matches_input(out / f"{gid}.ms", d, gid)
    assert visible(out) == sorted(f"{g}.ms" for g in ids) and staging_left(out) == []


def test_full_scratch_refuses_early_and_leaves_nothing(tmp_path, tiny_tmpfs):
    d = tmp_path / "in"
    (gid,) = small_groups(d, 1, n_antennas=24)  # ~1.8 MB files: one part fits, not two
    config = small_config(d, tmp_path / "out", tiny_tmpfs / "dsa110ms")
    # refused before any job: the group's scratch is more than the free space
    proc = run_snakemake(tmp_path, "--cores", "1", config=config, check=False)
    assert proc.returncode != 0
    assert "no group fits; free space there" in proc.stdout, proc.stdout[-3000:]
    assert "rule ms_part" not in proc.stdout and "Traceback" not in proc.stdout
    assert visible(tmp_path / "out") == [] and staging_left(tmp_path / "out") == []
    assert leftovers(tiny_tmpfs / "dsa110ms") == []
    # and told to try anyway, each part checks its own room first
    proc = run_snakemake(
        tmp_path, "--cores", "1", "--resources", "scratch_mb=1", config=config, check=False
    )
    assert proc.returncode != 0
    reasons = [
        line
        for log in (tmp_path / "logs" / gid).glob("part_sb*.log")
        for line in log.read_text().splitlines()
        if " ERROR " in line
    ]
    assert reasons and all("out of scratch space on" in r or "no space left" in r for r in reasons)
    assert visible(tmp_path / "out") == [] and staging_left(tmp_path / "out") == []
    assert leftovers(tiny_tmpfs / "dsa110ms") == []


def test_two_runs_at_once_on_the_same_scratch_root_and_groups(tmp_path, scratch_root):
    """Two instances in different working directories, same scratch root, same input and
    output: neither touches the other's live scratch, both complete, every MS is valid."""
    d = tmp_path / "in"
    ids = small_groups(d, 2, start="2026-06-01T00:00:00")
    procs = []
    for name in ("a", "b"):
        work = tmp_path / name
        work.mkdir()
        config = small_config(d, tmp_path / "out", scratch_root)
        cmd = snakemake_command(work, "--cores", "1", config=config)
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for p, text in zip(procs, outputs, strict=True):
        assert p.returncode == 0, text[-3000:]
    out = tmp_path / "out"
    assert visible(out) == sorted(f"{g}.ms" for g in ids) and staging_left(out) == []
    for gid in ids:
        assert_matches_input(out / f"{gid}.ms", d, gid)
