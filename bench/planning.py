"""What planning a window costs as the archive grows: ``snakemake -n`` of a 1-day window
(``start_time``/``end_time``, ~280 groups) over input directories of placeholder files (16
empty files a group, one group every 309 s), for each archive size, in one invocation:

    .venv/bin/python -m bench.planning                    # 2,000 and 20,000 groups
    .venv/bin/python -m bench.planning --groups 2000 20000 100000

Prints each dry run's wall time and peak RSS (its whole process tree) and the growth from the
smallest archive to each larger one (issue 21's goal: a 1-day window <= 5 s and <= 300 MB,
growing <= 25 % from 2,000 to 20,000 groups). Archives are made once in ``bench/cache/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import stat
from pathlib import Path

from bench.run import CACHE, fresh, run_timed, snakemake_command

#: Seconds between groups (24 integrations of 12.88 s) and the window planned.
GROUP_SPACING_S = 309
ARCHIVE_START = dt.datetime(2026, 1, 1)
WINDOW = ("2026-01-05T00:00:00", "2026-01-05T23:59:59")


def placeholder_names(first: dt.datetime, n_groups: int) -> list[str]:
    """The 16 subband file names of each of ``n_groups`` groups from ``first``, one group every
    :data:`GROUP_SPACING_S`, each file named up to 2 s after its sb00 (as correlator nodes do)."""
    from dsa110ms.groups import subband_file_name

    names = []
    for g in range(n_groups):
        start = first + dt.timedelta(seconds=GROUP_SPACING_S * g)
        names += [subband_file_name(start + dt.timedelta(seconds=sb % 3), sb) for sb in range(16)]
    return names


def make_empty_files(directory: Path, names: list[str]) -> None:
    """Empty regular files ``names`` in ``directory``: one mknod each, relative to the
    directory's descriptor (1.6 M files in about half a minute)."""
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            with contextlib.suppress(FileExistsError):
                os.mknod(name, 0o644 | stat.S_IFREG, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def placeholder_archive(n_groups: int) -> Path:
    """An input directory of ``n_groups`` groups of empty subband files (made once)."""
    directory = CACHE / f"placeholders-{n_groups}"
    if directory.is_dir() and sum(1 for _ in os.scandir(directory)) >= 16 * n_groups:
        return directory
    fresh(directory)
    make_empty_files(directory, placeholder_names(ARCHIVE_START, n_groups))
    return directory


def plan_window(n_groups: int) -> dict:
    """``snakemake -n -q`` of :data:`WINDOW` over an archive of ``n_groups`` groups."""
    archive = placeholder_archive(n_groups)
    work = fresh(CACHE / f"work-planning-{n_groups}")
    cmd = snakemake_command(work, archive, "-n", "-q", start_time=WINDOW[0], end_time=WINDOW[1])
    wall, sampler, _ = run_timed(cmd, work)
    fresh(work)
    return {"groups": n_groups, "wall_s": round(wall, 2), "peak_rss_mb": sampler.max_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", type=int, nargs="+", default=[2000, 20000])
    a = p.parse_args(argv)
    results = []
    for n in sorted(a.groups):
        results.append(plan_window(n))
        print(json.dumps(results[-1]), flush=True)
    base = results[0]
    for r in results:
        growth = r["wall_s"] / base["wall_s"] - 1
        print(
            f"{r['groups']:>7} groups: {r['wall_s']:6.2f} s, {r['peak_rss_mb']:6.1f} MB "
            f"({growth:+.0%} wall vs {base['groups']} groups)"
        )
    (CACHE / "planning.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
