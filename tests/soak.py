"""Soak: many small groups converted with faults injected at random (fixed seed), then checked.

    .venv/bin/python -m tests.soak --groups 100 --seed 1      # the full soak (~10 min, 2 cores)

1. simulates ``--groups`` small groups (two subbands each, converted under
   ``incomplete_groups: convert``);
2. draws a fault plan: per group, a lock-type error on the first (sometimes also the second)
   join attempt, or a corrupt part, or a crashing part job, or a part job killed by SIGKILL (as
   the out-of-memory killer kills); and every scratch removal fails once
   with a permission error; and about one group in five gets a subband re-sent after the run;
3. runs the workflow once with the faults (the corrupt and crashed groups must fail, every other
   group must be published), then once more with the plain command and no faults (everything
   must be published, and exactly the published groups whose subband was re-sent are reported
   as changed since publication, their MSs kept);
4. checks every published MS against its input files element by element, and that the scratch
   root and the output directory hold nothing else;
5. prints the counts and exits non-zero if anything is wrong.

``tests/test_soak.py`` runs a reduced version (10 groups) in ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from dsa110ms.faults import LOCK_ERRORS
from dsa110ms.groups import discover
from dsa110ms.simulate import SimulationSpec, simulate

from .conftest import SCRATCH_PARENT, leftovers, run_snakemake, staging_left, visible
from .test_robustness import assert_matches_input


def fault_plan(ids: list[str], rng: random.Random) -> tuple[dict, Counter, set]:
    """(faults config, injected faults by kind, groups that must fail the first run)."""
    concat: dict[str, dict[str, str]] = {}
    crashes: list[str] = []
    killed: list[str] = []
    injected: Counter = Counter()
    must_fail: set[str] = set()
    for gid in ids:
        draw = rng.random()
        if draw < 0.35:
            kinds = [rng.choice(sorted(LOCK_ERRORS))]
            if rng.random() < 0.3:
                kinds.append(rng.choice(sorted(LOCK_ERRORS)))  # fails twice, third attempt works
            concat[gid] = {str(a + 1): k for a, k in enumerate(kinds)}
            injected.update(kinds)
        elif draw < 0.42:
            concat[gid] = {"1": "corrupt"}
            injected["corrupt"] += 1
            must_fail.add(gid)
        elif draw < 0.49:
            crashes.append(f"{gid}/sb{rng.choice([0, 15]):02d}")
            injected["part_crash"] += 1
            must_fail.add(gid)
        elif draw < 0.53:  # killed as the out-of-memory killer kills (SIGKILL)
            killed.append(f"{gid}/sb{rng.choice([0, 15]):02d}")
            injected["part_killed"] += 1
            must_fail.add(gid)
    faults = {
        "concat": concat,
        "part_crash": crashes,
        "part_killed": killed,
        "cleanup_permission_error": True,
    }
    return faults, injected, must_fail


def soak(n_groups: int, seed: int, workdir: Path) -> dict:
    rng = random.Random(seed)
    input_dir = workdir / "in"
    simulate(
        SimulationSpec(n_groups=n_groups, subbands=(0, 15), n_antennas=6, n_integrations=2),
        input_dir,
    )
    groups = {g.id: g for g in discover(input_dir, incomplete_groups="convert")}
    ids = list(groups)
    faults, injected, must_fail = fault_plan(ids, rng)
    resent = sorted(g for g in ids if rng.random() < 0.2)  # a subband re-sent after the run
    scratch_root = SCRATCH_PARENT / f"dsa110ms-soak-{uuid.uuid4().hex[:8]}"
    out = workdir / "out"
    config = {
        "input_dir": input_dir,
        "output_dir": out,
        "scratch_root": scratch_root,
        "incomplete_groups": "convert",
        "concat_retries": 2,
    }
    started = time.time()
    try:
        first = run_snakemake(
            workdir, "--cores", "2", config={**config, "faults": faults}, check=False
        )
        first_run = last_run_record(workdir)
        for gid in resent:  # the same bytes, written again: the file is not the one converted
            os.utime(groups[gid].files[15])
        second = run_snakemake(workdir, "--cores", "2", config=config, check=False)
        second_run = last_run_record(workdir)
        wrong = []
        for gid in ids:
            try:
                assert_matches_input(out / f"{gid}.ms", input_dir, gid)
            except Exception as exc:  # noqa: BLE001 - every kind of mismatch is counted
                wrong.append(f"{gid}: {type(exc).__name__}: {str(exc)[:200]}")
        stale = leftovers(scratch_root)
        extra = [p for p in visible(out) if p not in {f"{g}.ms" for g in ids}] + staging_left(out)
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)
    return {
        "groups": len(ids),
        "seed": seed,
        "injected_faults": dict(sorted(injected.items())),
        "injected_cleanup_permission_errors": first_run["cleanup_retries"],
        "first_run_exit": first.returncode,
        "first_run_failed_groups": first_run["groups_failed"],
        "expected_failed_groups": len(must_fail),
        "unexpected_failures": sorted(set(first_run["failed_groups"]) ^ must_fail),
        "join_retries": first_run["join_retries"],
        "join_failures_by_class": first_run["join_failures_by_class"],
        "cleanup_failures": first_run["cleanup_failures"],
        "recovery_run_exit": second.returncode,
        # a re-sent file of a published group is reported (kept, not converted again); a failed
        # group's is simply converted
        "expected_changed": sorted(set(resent) - set(first_run["failed_groups"])),
        "reported_changed": sorted(second_run.get("changed_inputs") or ()),
        "wrong_outputs": wrong,
        "stale_scratch_entries": len(stale),
        "unexpected_output_entries": extra,
        "wall_s": round(time.time() - started, 1),
    }


def last_run_record(workdir: Path) -> dict:
    return json.loads((workdir / "logs/metrics/runs.jsonl").read_text().splitlines()[-1])


def passed(report: dict) -> bool:
    return (
        report["first_run_exit"] == (1 if report["expected_failed_groups"] else 0)
        and report["reported_changed"] == report["expected_changed"]
        and not report["unexpected_failures"]
        and report["recovery_run_exit"] == 0
        and not report["wrong_outputs"]
        and report["stale_scratch_entries"] == 0
        and not report["unexpected_output_entries"]
        and report["cleanup_failures"] == 0
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=None, help="kept afterwards if given")
    a = p.parse_args(argv)
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="dsa110ms-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report = soak(a.groups, a.seed, workdir)
    if a.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=1))
    ok = passed(report)
    print(f"soak: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
