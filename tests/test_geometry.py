"""Phase centres and UVW against an independent astropy computation, at high and low Dec."""

import warnings

import numpy as np
import pytest

from dsa110ms.groups import scan
from dsa110ms.mspart import write_part
from dsa110ms.simulate import SimulationSpec, simulate

from .independent import ms_uvw_reference

UVW_TOLERANCE_M = 1e-3


@pytest.mark.parametrize("dec_deg", [-25.0, 20.0, 55.0, 86.0])
def test_part_uvw_matches_independent_computation(tmp_path, dec_deg):
    simulate(
        SimulationSpec(n_antennas=12, n_integrations=3, subbands=(7,), pointing_dec_deg=dec_deg),
        tmp_path / "in",
    )
    (f,) = scan(tmp_path / "in")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        part = write_part(f.path, tmp_path / "g" / "sb07.ms")
    uvw, expected, ha = ms_uvw_reference(part)
    assert np.abs(ha).max() < 1e-9, "every field is on the meridian when its data were taken"
    err = np.abs(uvw - expected).max()
    assert err < UVW_TOLERANCE_M, f"max |dUVW| = {err * 1e3:.3f} mm at Dec {dec_deg}"
    longest = np.linalg.norm(uvw, axis=1).max()
    assert longest > 1000, "the test array has km baselines, so a frame error would show"
