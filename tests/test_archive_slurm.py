"""The archive driver (python -m dsa110ms.archive) through profiles/slurm, on the single-node
SLURM of tests/slurm/cluster.sh: 36 groups over three days, each day a window and a Snakemake
run of its own, each window one sbatch for its 12 groups (at most one per 12 groups of a
window), every SLURM job asking for one core, the memory of one job and the sum of its jobs'
runtimes; every MS equal to its input files; no scratch left on the node; a second run of the
driver submits nothing.

Groups are tiny (3 antennas, 1 integration) and of one subband (sb00, converted under
``incomplete_groups: convert``): inside a SLURM job the plugin's Snakemake runs one job at a time,
each ~3 s to start (srun and a Snakemake of its own), so 12 groups of 16 subbands (216 jobs)
would take ~11 minutes per SLURM job; 12 groups of one (36 jobs) take ~2."""

from __future__ import annotations

import datetime as dt
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dsa110ms.groups import discover
from dsa110ms.simulate import SimulationSpec, simulate

from .conftest import REPO, leftovers, staging_left
from .test_archive import write_config
from .test_robustness import assert_matches_input
from .test_slurm import slurm, slurm_jobs  # noqa: F401 (slurm: the fixture, used below)

pytestmark = pytest.mark.usefixtures("slurm")

DAYS = ("2026-11-29", "2026-11-30", "2026-12-01")
GROUPS_A_DAY = 12
#: groups one SLURM job holds (profiles/slurm: group-components)
GROUPS_A_JOB = 12
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")


def simulate_days(d: Path) -> list[str]:
    """``GROUPS_A_DAY`` tiny groups on each of ``DAYS``, from 12:00 UTC; their ids."""
    for day in DAYS:
        spec = SimulationSpec(
            n_groups=GROUPS_A_DAY,
            n_antennas=3,
            n_integrations=1,
            subbands=(0,),
            start=f"{day}T12:00:00",
        )
        simulate(spec, d)
    ids = [g.id for g in discover(d, incomplete_groups="convert")]
    assert len(ids) == GROUPS_A_DAY * len(DAYS)
    return ids


def run_archive(work: Path, config: Path) -> subprocess.CompletedProcess:
    """The driver with the SLURM profile: ``--cores 1`` (what a SLURM job uses, see the profile),
    the three windows at once (``--lookahead`` of a whole window) so that the node's two cores
    run two SLURM jobs at a time."""
    command = [
        sys.executable,
        "-m",
        "dsa110ms.archive",
        "--cores",
        "1",
        "--at-once",
        str(len(DAYS)),
        "--lookahead",
        str(GROUPS_A_DAY),
        "--progress-s",
        "10",
        "--configfile",
        str(config),
        "--",
        "--profile",
        str(REPO / "profiles" / "slurm"),
    ]
    proc = subprocess.run(
        command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-5000:]
    return proc


def submitted_by_window(work: Path) -> dict[str, list[str]]:
    """Window start -> the SLURM job ids its Snakemake submitted, from the window's log (every
    run of it)."""
    logs = sorted((work / "logs" / "archive").glob("*.log"))
    return {log.stem: SUBMITTED.findall(log.read_text()) for log in logs}


def groups_by_window(ids: list[str], windows: list[str]) -> dict[str, list[str]]:
    """Each group id under the last window that starts at or before it."""
    return {
        w: [g for g in ids if w <= g and all(g < later for later in windows[i + 1 :])]
        for i, w in enumerate(windows)
    }


def most_in_a_minute(times: list[str]) -> int:
    """The most of these submit times (squeue's) that fall within 60 s of each other."""
    ts = sorted(dt.datetime.fromisoformat(t) for t in times)
    return max(sum(1 for u in ts if t <= u < t + dt.timedelta(seconds=60)) for t in ts)


def test_archive_through_slurm_one_sbatch_per_12_groups(tmp_path, scratch_root):
    input_dir = tmp_path / "in"
    ids = simulate_days(input_dir)
    work = tmp_path / "work"
    config = write_config(work, input_dir, scratch_root)
    proc = run_archive(work, config)

    submitted = submitted_by_window(work)
    assert len(submitted) == len(DAYS), (submitted, proc.stdout[-3000:])
    by_window = groups_by_window(ids, sorted(submitted))
    for window, gids in by_window.items():
        assert len(gids) == GROUPS_A_DAY, by_window
        assert 1 <= len(submitted[window]) <= math.ceil(len(gids) / GROUPS_A_JOB), submitted
    every = [job for jobs in submitted.values() for job in jobs]
    assert len(every) <= math.ceil(len(ids) / GROUPS_A_JOB) == 3, submitted
    jobs = slurm_jobs(every)
    assert [j["state"] for j in jobs] == ["COMPLETED"] * len(every), jobs
    # one core and one job's memory each, whatever its groups; its runtime grows with them:
    # a template (2 min), a part (1) and a concat (5) a group
    assert {(j["cpus"], j["memory"]) for j in jobs} == {("1", "3000M")}, jobs
    minutes = GROUPS_A_JOB * (2 + 1 + 5)
    assert {j["time_limit"] for j in jobs} == {f"{minutes // 60}:{minutes % 60:02d}:00"}, jobs
    assert most_in_a_minute([j["submitted"] for j in jobs]) <= 10

    out = work / "out"
    assert sorted(p.name for p in out.glob("*.ms")) == [f"{gid}.ms" for gid in sorted(ids)]
    for gid in ids:
        assert_matches_input(out / f"{gid}.ms", input_dir, gid)
    # the SLURM jobs removed their groups' scratch on the node, each window's run its own
    # instance; the scratch_root fixture checks the root again after the test
    assert leftovers(scratch_root) == []
    assert staging_left(out) == []

    # every window is done: a second run of the driver submits nothing
    run_archive(work, config)
    assert submitted_by_window(work) == submitted
    assert leftovers(scratch_root) == []
