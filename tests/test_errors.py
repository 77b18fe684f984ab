"""What a person sees when the run cannot start: one line naming the problem and what to do,
not a traceback (real Snakemake, the repository's workflow)."""

from __future__ import annotations

import os
import shutil
import subprocess

from .conftest import snakemake_command


def first_problem(proc: subprocess.CompletedProcess) -> str:
    """The first line of the output that reports an error or warning."""
    assert "Traceback" not in proc.stdout, proc.stdout[-3000:]
    return next(
        line for line in proc.stdout.splitlines() if "error" in line.lower() or "WARN" in line
    )


def run(workdir, config, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        snakemake_command(workdir, "--cores", "1", config=config),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def test_empty_input_dir(tmp_path):
    (tmp_path / "in").mkdir()
    proc = run(tmp_path, {"input_dir": tmp_path / "in"})
    assert proc.returncode == 1
    assert first_problem(proc) == (
        f"dsa110ms: error: {tmp_path / 'in'}: no subband files (YYYY-MM-DDTHH:MM:SS_sbNN.hdf5) "
        "in it; check input_dir (snakemake --config input_dir=/path/to/files)"
    )


def test_no_group_in_the_window_and_unknown_subband_name(tmp_path, two_groups):
    """A file named in the window with an unknown subband is named; one named outside it is
    left to the run of its own window (a window reads only the names near it)."""
    shutil.copytree(two_groups, tmp_path / "in")
    stray = tmp_path / "in" / "2026-01-16T00:00:02_sb16.hdf5"
    shutil.copy(tmp_path / "in" / "2026-01-15T03:00:02_sb00.hdf5", stray)
    elsewhere = tmp_path / "in" / "2026-01-15T03:00:02_sb17.hdf5"
    shutil.copy(stray, elsewhere)
    proc = run(tmp_path, {"input_dir": tmp_path / "in", "start_time": "2026-01-16T00:00:00"})
    assert proc.returncode == 1
    lines = [line for line in proc.stdout.splitlines() if line.startswith("dsa110ms")]
    assert lines[0] == (
        f"dsa110ms WARNING: {stray}: unknown subband sb16 (DSA-110 has sb00-sb15), ignored; "
        "rename it or move it out of input_dir"
    )
    assert lines[-1].startswith("dsa110ms: error: no group in ") and lines[-1].endswith(
        "between start_time=2026-01-16T00:00:00 and end_time=None; its files span "
        "2026-01-15T03:00:00 to 2026-01-15T03:05:12: widen the window"
    )
    assert str(elsewhere) not in proc.stdout


def test_bad_config_value(tmp_path):
    proc = run(tmp_path, {"spw_layout": "one"})
    assert proc.returncode == 1
    assert first_problem(proc) == (
        "dsa110ms: error: config key spw_layout: 'one' is not allowed; allowed: per_subband, "
        "single (fix it in config/config.yaml or with snakemake --config)"
    )


def test_missing_casa_data(tmp_path, two_groups):
    site = tmp_path / "site.py"
    site.write_text('measurespath = "/nonexistent/casadata"\n')
    proc = run(tmp_path, {"input_dir": two_groups}, env={**os.environ, "CASASITECONFIG": str(site)})
    assert proc.returncode == 1
    assert first_problem(proc) == (
        "dsa110ms: error: CASA data not found: measurespath /nonexistent/casadata (set in "
        f"{site}) has no geodetic/ directory; install the pinned casadata (make venv, or pip "
        "install casadata) or point CASASITECONFIG at a site config whose measurespath holds it"
    )


def test_an_unexpected_failure_in_a_job_is_one_line_and_its_traceback_stays_in_the_log(
    tmp_path, capfd
):
    import pytest

    from dsa110ms.run.joblog import job_log

    log = tmp_path / "job.log"
    with pytest.raises(SystemExit), job_log(log):
        raise ValueError("To change to a dtype of a different size, the last axis ...")
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "unexpected ValueError: To change to a dtype" in err[0] and str(log) in err[0]
    assert "Traceback (most recent call last)" in log.read_text()
