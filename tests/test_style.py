"""The code style the project promises: ruff, snakefmt and snakemake --lint all clean."""

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, SNAKEMAKE

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "cmd",
    [
        [BIN / "ruff", "check", "dsa110ms", "scripts", "tests", "bench"],
        [BIN / "ruff", "format", "--check", "dsa110ms", "scripts", "tests", "bench"],
        [BIN / "snakefmt", "--check", "Snakefile", "rules"],
        [SNAKEMAKE, "--lint"],
    ],
    ids=["ruff", "ruff-format", "snakefmt", "snakemake-lint"],
)
def test_clean(cmd):
    proc = subprocess.run([str(c) for c in cmd], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
