"""Streaming mode (python -m dsa110ms.stream) against the simulator dropping files in real time:
`_incomplete` files renamed when written, per-node jitter, a node down for one group, and the
stream stopped in the middle of a batch and started again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from dsa110ms.simulate import SimulationSpec, drop_over_time

from .test_robustness import assert_matches_input

GROUP_INTERVAL_S = 6.0


def start_stream(work: Path, input_dir: Path, scratch_root: Path) -> subprocess.Popen:
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

    group_ids = sorted(p.name[:19] for _, p in dropped if p.name.endswith("_sb00.hdf5"))
    groups = sorted(p.stem for p in (work / "out").glob("*.ms"))
    assert len(dropped) == 47 and len(group_ids) == 3
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
