"""Inputs from a hostile trial (issue 12), through the real Snakemake CLI: a tolerance that would
merge two observations, non-finite numbers and impossible dates on the command line, a dangling
symlink in the input directory. Each is one line naming the key or file, or converts right."""

from __future__ import annotations

import pytest

from .conftest import run_snakemake
from .test_robustness import assert_matches_input, small_config, small_groups


def error_lines(proc) -> list[str]:
    assert "Traceback" not in proc.stdout, proc.stdout[-3000:]
    return [line for line in proc.stdout.splitlines() if line.startswith("dsa110ms: error:")]


def test_tolerance_beyond_half_the_cadence_is_refused_and_observations_stay_apart(
    tmp_path, scratch_root
):
    """Two consecutive observations (sb00 ~309 s apart) with duplicate_subbands=latest: a 400 s
    window took them as one group, the MS named after the first holding the second's data. It
    is refused; at the largest tolerance allowed each MS holds its own observation's files."""
    d, out = tmp_path / "in", tmp_path / "out"
    ids = small_groups(d, 2, start="2026-01-15T03:00:00")
    config = small_config(d, out, scratch_root, duplicate_subbands="latest")
    proc = run_snakemake(
        tmp_path, "--cores", "1", "--config", "tolerance_s=400", config=config, check=False
    )
    assert proc.returncode == 1
    assert error_lines(proc) == [
        "dsa110ms: error: config key tolerance_s: 400 is greater than the maximum of 150; Max. "
        "seconds from a file's name to its group's sb00 and to its data's start: at most 150, "
        "below half the ~309 s between observations, so two never merge. (fix it in "
        "config/config.yaml or with snakemake --config)"
    ]
    assert not out.exists()

    run_snakemake(tmp_path, "--cores", "1", "--config", "tolerance_s=150", config=config)
    assert sorted(p.name for p in out.glob("*.ms")) == [f"{g}.ms" for g in ids]
    for gid in ids:
        assert_matches_input(out / f"{gid}.ms", d, gid)


@pytest.mark.parametrize(
    "override, line",
    [
        ("tolerance_s=nan", "config key tolerance_s: nan is not a finite number; Max."),
        ("tolerance_s=inf", "config key tolerance_s: inf is not a finite number; Max."),
        ("tolerance_s=1e300", "config key tolerance_s: 1e+300 is greater than the maximum of 150"),
        (
            "start_time=2026-02-30T25:61:61",
            "config key start_time: '2026-02-30T25:61:61' is not a real time (day is out of "
            "range for month)",
        ),
        (
            "end_time=2026-01-15T25:61:61",
            "config key end_time: '2026-01-15T25:61:61' is not a real time (hour must be in 0..23)",
        ),
        (
            'groups=["2026-01-15T03:00:02", "2026-02-30T03:00:00"]',
            "config key groups.1: '2026-02-30T03:00:00' is not a real time (day is out of range "
            "for month)",
        ),
        (
            "simulate={start: 2026-13-01T00:00:00}",
            "config key simulate.start: '2026-13-01T00:00:00' is not a real time (month must be "
            "in 1..12)",
        ),
    ],
)
def test_non_finite_numbers_and_impossible_times_are_one_line(tmp_path, override, line):
    proc = run_snakemake(tmp_path, "--cores", "1", "--config", override, check=False)
    assert proc.returncode == 1
    (error,) = error_lines(proc)
    assert error.startswith(f"dsa110ms: error: {line}"), error
    assert error.endswith("(fix it in config/config.yaml or with snakemake --config)")


def test_dangling_symlink_is_named_as_such_and_the_other_group_converts(tmp_path, scratch_root):
    d, out = tmp_path / "in", tmp_path / "out"
    ids = small_groups(d, 2)
    (link,) = d.glob(f"{ids[1][:16]}*_sb15.hdf5")
    target = tmp_path / "moved" / link.name
    link.unlink()
    link.symlink_to(target)
    proc = run_snakemake(tmp_path, "--cores", "1", config=small_config(d, out, scratch_root))
    assert (
        f"dsa110ms WARNING: {link}: dangling symlink (target {target} does not exist); "
        f"group {ids[1]} not converted"
    ) in proc.stdout.splitlines()
    assert "permission denied" not in proc.stdout
    assert sorted(p.name for p in out.glob("*.ms")) == [f"{ids[0]}.ms"]
