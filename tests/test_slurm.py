"""The workflow through the SLURM profile, on a real single-node SLURM started for the test
(tests/slurm/cluster.sh: installs slurm-wlm and munge if missing, starts munged, slurmctld and
slurmd, and stops them afterwards)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from dsa110ms.ms.publish import OutputArea, is_published

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


#: What :func:`slurm_jobs` tells of a job, and squeue's field for it.
SQUEUE_FIELDS = {
    "id": "%i",
    "state": "%T",
    "node": "%N",
    "cpus": "%C",
    "memory": "%m",  # e.g. 3000M
    "time_limit": "%l",  # [days-][hours:]minutes:seconds
    "submitted": "%V",  # e.g. 2026-12-01T10:00:00
}


def slurm_jobs(ids: list[str]) -> list[dict]:
    """State, node, resources and submit time of SLURM jobs, by id; finished ones included
    (MinJobAge keeps them listed)."""
    out = subprocess.run(
        ["squeue", "-t", "all", "-h", "-j", ",".join(ids), "-o", "|".join(SQUEUE_FIELDS.values())],
        capture_output=True,
        text=True,
    ).stdout
    jobs = [dict(zip(SQUEUE_FIELDS, line.split("|"), strict=True)) for line in out.split()]
    return sorted(jobs, key=lambda j: int(j["id"]))


def test_slurm_profile_one_job_per_12_groups_retry_and_clean_node(slurm, tmp_path, scratch_root):
    """Two groups through profiles/slurm: one SLURM job for both (a SLURM job holds up to 12
    groups, ``group-components``), on one node; the injected concat failure of one group is
    retried within the job and the group completes; outputs are correct and the node's scratch
    is empty. The job asks for one core and the memory of one job, and a runtime that is the sum
    of its jobs' (2 groups of a template, 2 parts and a concat: 2 * (2 + 2 * 1 + 5) minutes)."""
    ids = small_groups(tmp_path / "in", 2)
    config = small_config(
        tmp_path / "in",
        tmp_path / "out",
        scratch_root,
        faults={"concat": {ids[1]: {1: "read_write"}}},
    )
    proc = run_snakemake(tmp_path, "--profile", str(REPO / "profiles" / "slurm"), config=config)
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", proc.stdout)
    assert len(submitted) == 1, proc.stdout[-3000:]
    jobs = slurm_jobs(submitted)
    assert [j["state"] for j in jobs] == ["COMPLETED"], jobs
    assert [(j["cpus"], j["memory"], j["time_limit"]) for j in jobs] == [("1", "3000M", "18:00")]
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
    # both groups' jobs ran in the one SLURM job
    assert {e.get("cluster_job") for e in events if e["kind"] in ("template", "part", "join")} == {
        submitted[0]
    }
    # the jobs removed their groups' node-local scratch themselves (the scratch_root fixture
    # checks that the whole root is empty after the run)
    assert not any(Path(scratch_root).rglob("*.part"))


def test_slurm_failed_groups_are_cleaned_on_the_node_by_their_job(slurm, tmp_path, scratch_root):
    """Three groups in one SLURM job: one that converts, one that fails in every attempt of its
    join, one whose part job is killed outright (it exits at once, running no cleanup code, like
    SIGKILL or the OOM killer). The SLURM job is never resubmitted; the failing join runs
    concat_retries + 1 times inside it; each failed group's node-local scratch is removed by the
    SLURM job (the hooks run only on the submitting host; their cleanup is of the run's whole
    scratch directory); the converted group keeps its MS and its published stamp although its
    SLURM job failed (``keep-incomplete``). With ``phase_center: group_meridian``, each group's
    phase plan is in the SLURM job too. Groups run one after another in the job, earliest
    first: the killed part's group runs after the failed join's."""
    converted, failed_join, killed_part = small_groups(
        tmp_path / "in", 3, start="2026-05-01T00:00:00"
    )
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
    out = tmp_path / "out"
    assert [p.name for p in out.glob("*.ms")] == [f"{converted}.ms"]
    assert is_published(out / f"{converted}.ms")  # rotated to its group's meridian
    assert OutputArea.of(out).stamp(converted).exists()
    # retries happen inside the SLURM job only: one SLURM job for the three groups, not resubmitted
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", proc.stdout)
    assert len(submitted) == 1, proc.stdout[-3000:]
    assert [j["state"] for j in slurm_jobs(submitted)] == ["FAILED"]
    events = [
        json.loads(line)
        for line in (tmp_path / "logs" / "metrics" / "events.jsonl").read_text().splitlines()
    ]
    joins = [(e["group"], e["attempt"], e["outcome"]) for e in events if e["kind"] == "join"]
    assert joins == [(converted, 1, "published")] + [
        (failed_join, attempt, "transient") for attempt in (1, 2, 3)
    ]
    group_jobs = ("phase_plan", "part", "template")
    job_of = {e["group"]: e["cluster_job"] for e in events if e["kind"] in group_jobs}
    plans = {e["group"]: e["cluster_job"] for e in events if e["kind"] == "phase_plan"}

    def assert_cleaned_by_the_job(gid):
        cleanups = [e for e in events if e["kind"] == "cleanup" and e["path"].endswith(f"/{gid}")]
        assert cleanups and all(e["ok"] for e in cleanups), (gid, events)
        assert {e.get("cluster_job") for e in cleanups} == set(submitted), (gid, cleanups)

    assert {converted, failed_join} <= set(plans) and set(plans.values()) == set(submitted)
    assert_cleaned_by_the_job(failed_join)
    assert set(job_of) == {converted, failed_join, killed_part}
    assert set(job_of.values()) == set(submitted)
    assert plans == job_of
    assert_cleaned_by_the_job(killed_part)


def test_slurm_profile_as_snakemake_reads_it():
    """What profiles/slurm asks of Snakemake, as the installed Snakemake parses it: one SLURM job
    per 12 timestamp groups, at most 10 submissions a minute, no resubmission, one core per
    SLURM job (a --cores on the command line wins), and the profile's documented resources."""
    from snakemake.cli import parse_args

    profile = str(REPO / "profiles" / "slurm")
    _, args = parse_args(["--profile", profile, "--snakefile", str(REPO / "Snakefile")])
    assert args.executor == "slurm"
    assert args.groups == dict.fromkeys(
        ("phase_plan", "ms_template", "ms_part", "concat"), "convert"
    )
    assert args.group_components == {"convert": 12}
    limit = args.max_jobs_per_timespan
    assert (limit.max_jobs, limit.timespan) == (10, 60)
    assert (args.cores, args.retries, args.keep_going, args.keep_incomplete) == (1, 0, True, True)
    runtime = {rule: res["runtime"].value for rule, res in args.set_resources.items()}
    assert runtime == {"ms_template": 2, "phase_plan": 2, "ms_part": 1, "concat": 5}
    _, args = parse_args(["--profile", profile, "--snakefile", str(REPO / "Snakefile"), "-c2"])
    assert args.cores == 2
