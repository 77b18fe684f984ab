"""Metrics records and the fault plan, without Snakemake."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from dsa110ms import faults
from dsa110ms.observe import metrics


def test_read_events_finds_a_window_in_a_long_history(tmp_path):
    """Reading a window bisects the file; appenders stamp out of order by a few seconds, and a
    torn line is skipped: the result is every event stamped in the window, in file order."""
    rng = np.random.default_rng(0)
    stamps = np.cumsum(rng.random(50_000)) + rng.uniform(-5, 5, 50_000)
    lines = [json.dumps({"ts": float(t), "kind": "part", "i": i}) for i, t in enumerate(stamps)]
    lines.insert(30_000, '{"ts": 1')  # a line torn by a crashed writer
    (tmp_path / metrics.EVENTS).write_text("\n".join(lines) + "\n")
    for since in (0.0, stamps[10], stamps[40_000], stamps.max() + 1):
        got = [e["i"] for e in metrics.read_events(tmp_path, since=since)]
        assert got == [i for i, t in enumerate(stamps) if t >= since]


def test_run_summary_and_prometheus_file(tmp_path):
    metrics.configure(tmp_path)
    metrics.emit("part", group="g1", subband=0, ok=True, seconds=1.5, bytes=100)
    metrics.emit("part", group="g2", subband=0, ok=False, seconds=0.5, bytes=0)
    metrics.emit("join", group="g1", attempt=1, outcome="transient", error_class="OSError.EXDEV")
    metrics.emit("join", group="g1", attempt=2, outcome="published", error_class=None, bytes=7)
    metrics.emit("cleanup", path="/x", ok=True, retries=1)
    metrics.emit("cleanup", path="/y", ok=False, retries=2, error="EACCES")
    events = metrics.read_events(tmp_path, since=0)
    assert len(events) == 6 and all("ts" in e and "pid" in e for e in events)
    summary = metrics.summarize_run(events, started=0.0, success=False, failed_groups=["g2"])
    assert summary["groups_converted"] == 1 and summary["groups_failed"] == 1
    assert summary["join_attempts"] == 2 and summary["join_retries"] == 1
    assert summary["join_failures_by_class"] == {"OSError.EXDEV": 1}
    assert summary["cleanup_retries"] == 3 and summary["cleanup_failures"] == 1
    assert summary["bytes_written"] == 7 and summary["parts_failed"] == 1
    metrics.write_run(tmp_path, summary)
    assert json.loads((tmp_path / "runs.jsonl").read_text())["groups_failed"] == 1
    prom = (tmp_path / "dsa110ms.prom").read_text()
    assert "dsa110ms_last_run_groups_converted 1" in prom
    assert 'dsa110ms_last_run_join_failures{error_class="OSError.EXDEV"} 1' in prom
    assert "dsa110ms_last_run_success 0" in prom
    metrics.configure(None)


def test_fault_plan_lookup():
    f = faults.Faults.from_config(
        {"concat": {"*": {"2": "errno39"}, "g1": {"1": "read_write"}}, "part_crash": ["*/sb03"]}
    )
    assert f.concat_fault("g1", 1) == "read_write"
    assert f.concat_fault("g2", 2) == "errno39" and f.concat_fault("g2", 1) is None
    assert f.part_crashes("any", 3) and not f.part_crashes("any", 4)


def test_cleanup_permission_fault_fails_each_path_once():
    faults.activate({"cleanup_permission_error": True})
    with pytest.raises(PermissionError):
        faults.before_removal("/a")
    faults.before_removal("/a")
    with pytest.raises(PermissionError):
        faults.before_removal("/b")
    faults.activate(None)
    faults.before_removal("/c")


def test_faults_come_from_the_environment_and_unknown_ones_are_refused():
    """Faults are a test hook, not configuration: read from the run's environment, validated
    by their module (a typo must not make a test pass without its fault)."""
    env = {faults.FAULTS_ENV: json.dumps({"concat": {"*": {"1": "abort"}}})}
    assert faults.activate(environ=env).concat_fault("g", 1) == "abort"
    assert faults.activate(environ={}).concat_fault("g", 1) is None
    for bad in ({"concat": {"*": {"1": "explode"}}}, {"cleanup": True}):
        with pytest.raises(ValueError, match="unknown"):
            faults.activate(bad)
    assert sorted(faults.KINDS) == sorted(
        [*faults.LOCK_ERRORS, *faults.PERMANENT_ERRORS, *faults.PROCESS_ERRORS]
    )
    faults.activate({})


def test_run_record_counts_changed_inputs_not_acted_on(tmp_path):
    """Published MSs whose inputs changed: counted in the run record and the Prometheus file
    until a run publishes the group again."""
    metrics.configure(tmp_path)
    metrics.emit("join", group="g2", attempt=1, outcome="published", error_class=None, bytes=7)
    changed = {g: SimpleNamespace(what=f"sb15 {g}_sb15.hdf5 rewritten") for g in ("g1", "g2")}
    events = metrics.read_events(tmp_path, since=0)
    summary = metrics.summarize_run(
        events, started=0.0, success=True, failed_groups=[], changed_inputs=changed
    )
    assert summary["groups_changed_inputs"] == 1
    assert summary["changed_inputs"] == {"g1": "sb15 g1_sb15.hdf5 rewritten"}
    assert "dsa110ms_last_run_groups_changed_inputs 1" in metrics.prometheus_text(summary)


def test_group_facts_name_every_input_that_failed():
    """Two bad files in one group: the summary's reason names both, not only the last."""
    events = [
        {
            "ts": 1.0,
            "kind": "part",
            "group": "g",
            "file": f"/in/t_sb{sb}.hdf5",
            "ok": False,
            "error": f"/in/t_sb{sb}.hdf5: {why}",
            "seconds": 0.1,
        }
        for sb, why in (("02", "file signature not found"), ("04", "truncated"))
    ]
    error = metrics.group_facts(events, "g")["error"]
    assert error.startswith("part: /in/t_sb04.hdf5: truncated"), error
    assert error.endswith("also failed: t_sb02.hdf5 (see their logs)"), error
