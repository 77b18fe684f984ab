"""What ``phase_center: group_meridian`` (one FIELD: a phase plan job per group, the visibilities
rotated by the part jobs) costs against ``per_integration``, on full-size groups, measured
alternately in one invocation so that both see the same machine:

    .venv/bin/python -m bench.phase_center             # 3 x 1 group and 1 x 4 groups of each

Prints each run's wall time, the medians and their ratio (the goal: <= 1.10), and the part jobs'
and plan jobs' work seconds from the runs' events.
"""

from __future__ import annotations

import argparse
import json
import statistics

from bench.run import CACHE, SHM, bench_ours, fresh, full_size_group
from dsa110ms.owned import remove_owned

KINDS = ("per_integration", "group_meridian")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="runs of one group per kind")
    p.add_argument("--groups", type=int, default=4, help="groups in the one multi-group run")
    a = p.parse_args(argv)
    walls: dict[tuple[str, int], list[float]] = {}
    plan = [(1, a.repeats)] + ([(a.groups, 1)] if a.groups > 1 else [])
    for n_groups, repeats in plan:
        inputs = full_size_group(n_groups)
        for _ in range(repeats):
            for kind in KINDS:
                fresh(SHM, SHM.parent)
                r = bench_ours(inputs, f"{kind}-{n_groups}", phase_center=kind)
                walls.setdefault((kind, n_groups), []).append(r["wall_s"])
                print(json.dumps({"kind": kind, "groups": n_groups, **r}), flush=True)
    remove_owned(SHM, SHM.parent)
    summary = {}
    for n_groups, _ in plan:
        med = {k: statistics.median(walls[(k, n_groups)]) for k in KINDS}
        summary[f"{n_groups}_groups"] = {
            **{f"{k}_median_wall_s": v for k, v in med.items()},
            "ratio": round(med["group_meridian"] / med["per_integration"], 3),
            "per_group_s": {k: round(v / n_groups, 2) for k, v in med.items()},
        }
    (CACHE / "phase_center.json").write_text(json.dumps(summary, indent=1))
    for key, s in summary.items():
        print(
            f"{key}: per_integration {s['per_integration_median_wall_s']:.1f} s, "
            f"group_meridian {s['group_meridian_median_wall_s']:.1f} s, ratio {s['ratio']:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
