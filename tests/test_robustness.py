"""Faults injected into real runs: lock errors, corrupt parts, cleanup failures, crashes, bad
input, interruptions, a full tmpfs, concurrent runs. After each, nothing partial is published and
scratch is empty."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dsa110ms.groups import discover
from dsa110ms.publish import is_published
from dsa110ms.simulate import SimulationSpec, simulate

from .conftest import run_snakemake
from .msdata import expected_ms_data, read_ms, read_uvh5_raw

LOCK_KINDS = ("read_write", "bytes_read", "errno18", "errno39")


def small_groups(d: Path, n: int, start="2026-03-01T00:00:00", subbands=(0, 15), **spec) -> list:
    """n groups of two subbands (converted under incomplete_groups=convert)."""
    simulate(SimulationSpec(n_groups=n, subbands=subbands, start=start, **spec), d)
    return [g.id for g in discover(d, incomplete_groups="convert")]


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
    config = {
        "input_dir": input_dir,
        "output_dir": tmp_path / "out",
        "scratch_root": scratch_root,
        "incomplete_groups": "convert",
        "faults": faults,
        "alert_command": f'echo "$DSA110MS_ALERT" > {alert}',
    }
    proc = run_snakemake(tmp_path, "--cores", "2", config=config, check=False)
    assert proc.returncode != 0
    out = tmp_path / "out"
    for gid in ids[:4]:
        assert_matches_input(out / f"{gid}.ms", input_dir, gid)
    assert not (out / f"{ids[4]}.ms").exists() and not (out / f"{ids[5]}.ms").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [], "no staging left"
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
