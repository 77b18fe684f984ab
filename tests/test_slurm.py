"""The workflow through the SLURM profile, on a real single-node SLURM started for the test
(tests/slurm/cluster.sh: installs slurm-wlm and munge if missing, starts munged, slurmctld and
slurmd, and stops them afterwards)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO, run_snakemake
from .test_robustness import assert_matches_input, small_config, small_groups

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"


@pytest.fixture(scope="module")
def slurm():
    """A running single-node SLURM; skipped, with the reason, where this machine cannot run it."""
    check = subprocess.run([CLUSTER, "check"], capture_output=True, text=True)
    if check.returncode:
        pytest.skip(f"cannot run SLURM on this machine: {check.stdout.strip()}")
    start = subprocess.run([CLUSTER, "start"], capture_output=True, text=True)
    assert start.returncode == 0, start.stderr
    try:
        yield
    finally:
        stop = subprocess.run([CLUSTER, "stop"], capture_output=True, text=True)
        assert stop.returncode == 0, stop.stderr


def slurm_jobs(ids: list[str]) -> list[dict]:
    """State and node of SLURM jobs, finished ones included (MinJobAge keeps them listed)."""
    out = subprocess.run(
        ["squeue", "-t", "all", "-h", "-j", ",".join(ids), "-o", "%i|%T|%N"],
        capture_output=True,
        text=True,
    ).stdout
    return [
        dict(zip(("id", "state", "node"), line.split("|"), strict=True)) for line in out.split()
    ]


def test_slurm_profile_one_job_per_group_retry_and_clean_node(slurm, tmp_path, scratch_root):
    """Two groups through profiles/slurm: one SLURM job per group, on one node; the injected
    concat failure of one group is retried within its job and the group completes; outputs are
    correct and the node's scratch is empty."""
    ids = small_groups(tmp_path / "in", 2)
    config = small_config(
        tmp_path / "in",
        tmp_path / "out",
        scratch_root,
        faults={"concat": {ids[1]: {1: "read_write"}}},
    )
    proc = run_snakemake(tmp_path, "--profile", str(REPO / "profiles" / "slurm"), config=config)
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", proc.stdout)
    assert len(submitted) == 2, proc.stdout[-3000:]
    jobs = slurm_jobs(submitted)
    assert [j["state"] for j in jobs] == ["COMPLETED", "COMPLETED"], jobs
    for gid in ids:
        assert_matches_input(tmp_path / "out" / f"{gid}.ms", tmp_path / "in", gid)
    events = [
        json.loads(line)
        for line in (tmp_path / "logs" / "metrics" / "events.jsonl").read_text().splitlines()
    ]
    joins = {gid: [e for e in events if e["kind"] == "join" and e["group"] == gid] for gid in ids}
    assert [e["outcome"] for e in joins[ids[0]]] == ["published"]
    assert [(e["attempt"], e["outcome"]) for e in joins[ids[1]]] == [
        (1, "transient"),
        (2, "published"),
    ]
    # the jobs removed their groups' node-local scratch themselves (the scratch_root fixture
    # checks that the whole root is empty after the run)
    assert not any(Path(scratch_root).rglob("*.part"))


def test_slurm_failed_groups_are_cleaned_on_the_node_by_their_jobs(slurm, tmp_path, scratch_root):
    """Two groups that fail: one in every attempt of its join, one whose part job is killed
    outright (it exits at once, running no cleanup code, like SIGKILL or the OOM killer). Each
    is one SLURM job, never resubmitted; the failing join runs concat_retries + 1 times inside
    its job; each group's node-local scratch is removed by its own SLURM job (the hooks run
    only on the submitting host; their cleanup is of the run's whole scratch directory). With
    ``phase_center: group_meridian``, each group's phase plan is in its group's SLURM job too."""
    failed_join, killed_part = small_groups(tmp_path / "in", 2, start="2026-05-01T00:00:00")
    config = small_config(
        tmp_path / "in",
        tmp_path / "out",
        scratch_root,
        concat_retries=2,
        phase_center="group_meridian",
        faults={
            "concat": {failed_join: {1: "read_write", 2: "errno39", 3: "read_write"}},
            "part_crash": [f"{killed_part}/sb15"],
        },
    )
    proc = run_snakemake(
        tmp_path, "--profile", str(REPO / "profiles" / "slurm"), config=config, check=False
    )
    assert proc.returncode != 0
    assert not list((tmp_path / "out").glob("*.ms"))
    # retries happen inside the group's SLURM job only: one SLURM job per group, none resubmitted
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", proc.stdout)
    assert len(submitted) == 2, proc.stdout[-3000:]
    events = [
        json.loads(line)
        for line in (tmp_path / "logs" / "metrics" / "events.jsonl").read_text().splitlines()
    ]
    joins = [(e["group"], e["attempt"], e["outcome"]) for e in events if e["kind"] == "join"]
    assert joins == [(failed_join, attempt, "transient") for attempt in (1, 2, 3)]
    group_jobs = ("phase_plan", "part", "template")
    job_of = {e["group"]: e["cluster_job"] for e in events if e["kind"] in group_jobs}
    plans = {e["group"]: e["cluster_job"] for e in events if e["kind"] == "phase_plan"}
    assert plans == {gid: job_of[gid] for gid in (failed_join, killed_part)}
    assert sorted(job_of.values()) == sorted(submitted)
    for gid in (failed_join, killed_part):
        cleanups = [e for e in events if e["kind"] == "cleanup" and e["path"].endswith(f"/{gid}")]
        assert cleanups and all(e["ok"] for e in cleanups), (gid, events)
        assert {e.get("cluster_job") for e in cleanups} == {job_of[gid]}, (gid, cleanups)
