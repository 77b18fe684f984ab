"""Streaming mode (python -m dsa110ms.stream) against the simulator dropping files in real time:
`_incomplete` files renamed when written, per-node jitter, a node down for one group, and the
stream stopped in the middle of a batch and started again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from dsa110ms.groups import format_timestamp
from dsa110ms.run.internals import parse_config_overrides
from dsa110ms.simulate import SimulationSpec, drop_over_time, group_start_times, simulate

from .test_robustness import assert_matches_input

GROUP_INTERVAL_S = 6.0


def start_stream(work: Path, input_dir: Path, scratch_root: Path, *config: str) -> subprocess.Popen:
    """The stream in ``work``; ``config``: more key=value pairs for its --config."""
    command = [
        sys.executable,
        "-m",
        "dsa110ms.stream",
        "--poll-s",
        "0.5",
        "--wait-s",
        "4",
        "--exit-when-idle",
        "5",
        "--config",
        f"input_dir={input_dir}",
        f"output_dir={work / 'out'}",
        f"scratch_root={scratch_root}",
        *config,
    ]
    return subprocess.Popen(
        command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def read_until(proc: subprocess.Popen, needle: str, lines: list[str]) -> None:
    for line in proc.stdout:
        lines.append(line.rstrip())
        if needle in line:
            return
    raise AssertionError(f"stream ended before {needle!r}:\n" + "\n".join(lines))


def test_stream_converts_groups_as_they_complete_and_survives_a_restart(tmp_path, scratch_root):
    work, input_dir = tmp_path, tmp_path / "in"
    spec = SimulationSpec(n_groups=3, n_antennas=6)
    dropped: list = []
    dropper = threading.Thread(
        target=lambda: dropped.extend(
            drop_over_time(
                spec,
                input_dir,
                group_interval_s=GROUP_INTERVAL_S,
                node_jitter_s=2.0,
                missing=frozenset({(2, 7)}),  # sb07's node is down for the third group
            )
        )
    )
    began = time.time()
    stream = start_stream(work, input_dir, scratch_root)
    dropper.start()
    lines: list[str] = []
    # stop the stream (SIGTERM) while its second batch runs
    read_until(stream, "published", lines)
    read_until(stream, "batch of", lines)
    time.sleep(5)
    stream.send_signal(signal.SIGTERM)
    lines += stream.communicate(timeout=120)[0].splitlines()
    assert stream.returncode == 0, "\n".join(lines)
    stopped_at = time.time() - began
    dropper.join()
    restarted = start_stream(work, input_dir, scratch_root)
    lines += ["--- restarted ---", *restarted.communicate(timeout=300)[0].splitlines()]
    assert restarted.returncode == 0, "\n".join(lines)
    print("\n".join(lines))
    print(f"stopped at {stopped_at:.1f} s; files renamed at (s): {[t for t, _ in dropped]}")

    # a group's id is when its data start: the simulator's group start, whatever the names
    group_ids = [format_timestamp(t) for t in group_start_times(spec)]
    groups = sorted(p.stem for p in (work / "out").glob("*.ms"))
    assert len(dropped) == 47 and len({p.name[:19] for _, p in dropped}) > 3  # names jitter
    # the two complete groups are published once each, equal to their files; the third,
    # missing sb07 after the wait, is skipped by the default policy and recorded as such
    assert len(groups) == 2, "\n".join(lines)
    for gid in groups:
        assert_matches_input(work / "out" / f"{gid}.ms", input_dir, gid)
    events = [
        json.loads(line)
        for line in (work / "logs" / "metrics" / "events.jsonl").read_text().splitlines()
    ]
    published = [e["group"] for e in events if e["kind"] == "join" and e["outcome"] == "published"]
    assert sorted(published) == groups  # nothing converted twice across the restart
    state = json.loads((work / "logs" / "stream" / "state.json").read_text())
    assert {g: s["status"] for g, s in state.items()} == {
        groups[0]: "published",
        groups[1]: "published",
        group_ids[2]: "skipped",
    }
    assert "missing sb07" in state[group_ids[2]]["reason"]
    for gid in groups:
        assert 0 < state[gid]["latency_s"] < 120
    assert any("restarted" in line for line in lines)
    assert not (work / ".snakemake" / "locks").exists() or not any(
        (work / ".snakemake" / "locks").iterdir()
    )


def test_late_file_of_a_published_group_is_reported_once_and_recorded(tmp_path, scratch_root):
    """incomplete_groups=convert publishes a group without sb07; sb07 arrives afterwards, then
    a re-sent sb00 named 20 s later (the same data, so the same group id). Neither is converted
    nor silently ignored: one warning line each, and each in the state file."""
    source, input_dir = tmp_path / "source", tmp_path / "in"
    input_dir.mkdir()
    simulate(SimulationSpec(subbands=(0, 7, 15), n_antennas=6, max_jitter_s=0), source)
    names = sorted(p.name for p in source.iterdir())
    gid = names[0][:19]
    late, on_time = [n for n in names if "_sb07" in n], [n for n in names if "_sb07" not in n]
    for name in on_time:
        os.rename(source / name, input_dir / name)
    stream = start_stream(tmp_path, input_dir, scratch_root, "incomplete_groups=convert")
    lines: list[str] = []
    read_until(stream, f"{gid} published", lines)
    os.rename(source / late[0], input_dir / late[0])
    read_until(stream, f"warning: {late[0]}", lines)
    resent = f"{gid[:-2]}20_sb00.hdf5"  # the same observation's sb00, sent again 20 s later
    shutil.copy(input_dir / on_time[0], input_dir / "resent_incomplete.hdf5")
    os.rename(input_dir / "resent_incomplete.hdf5", input_dir / resent)
    lines += stream.communicate(timeout=60)[0].splitlines()
    assert stream.returncode == 0, "\n".join(lines)
    ms = tmp_path / "out" / f"{gid}.ms"
    reason = (
        f"arrived after group {gid} was published without it; move {ms} aside to convert the "
        "group again"
    )
    warnings = [line.split(" ", 3)[3] for line in lines if "warning:" in line]
    assert warnings == [f"warning: {late[0]}: {reason}", f"warning: {resent}: {reason}"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.ms*")) == [f"{gid}.ms"]
    state = json.loads((tmp_path / "logs" / "stream" / "state.json").read_text())
    assert list(state) == [gid] and state[gid]["status"] == "published"
    assert state[gid]["files"] == on_time
    assert state[gid]["late_files"] == {late[0]: reason, resent: reason}


def test_stream_reads_config_values_as_snakemake_does(tmp_path):
    pairs = [
        "start_time=2026-01-15T03:00:00",  # YAML would make it a datetime
        "tolerance_s=30",
        "simulate={n_groups: 2}",
        'groups=["2026-01-15T03:00:02"]',
    ]
    assert parse_config_overrides(pairs) == {
        "start_time": "2026-01-15T03:00:00",
        "tolerance_s": 30,
        "simulate": {"n_groups": "2"},
        "groups": ["2026-01-15T03:00:02"],
    }
    base = [sys.executable, "-m", "dsa110ms.stream", "--poll-s", "0.2", "--exit-when-idle", "0.5"]
    (tmp_path / "in").mkdir()
    ok = subprocess.run(
        [*base, "--config", f"input_dir={tmp_path / 'in'}", *pairs[:2]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "watching" in ok.stdout, ok.stdout + ok.stderr
    for pair, line in [
        ("tolerance_s=nan", "dsa110ms: error: config key tolerance_s: nan is not a finite number"),
        ("novalue", "dsa110ms: error: --config novalue: Invalid config definition"),
    ]:
        bad = subprocess.run(
            [*base, "--config", pair], cwd=tmp_path, capture_output=True, text=True
        )
        assert bad.returncode == 1 and bad.stdout == ""
        (error,) = bad.stderr.splitlines()
        assert error.startswith(line), error
