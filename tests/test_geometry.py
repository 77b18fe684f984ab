"""Phase centres and UVW against an independent astropy computation, at high and low Dec."""

import warnings

import numpy as np
import pytest

from dsa110ms.groups import scan
from dsa110ms.ms.template import write_template
from dsa110ms.simulate import SimulationSpec, simulate

from .independent import ms_uvw_reference

UVW_TOLERANCE_M = 1e-3


@pytest.mark.parametrize("dec_deg", [-25.0, 20.0, 55.0, 86.0])
def test_template_uvw_matches_independent_computation(tmp_path, dec_deg):
    """The group's UVW and fields come from its template (every part shares them)."""
    simulate(
        SimulationSpec(n_antennas=12, n_integrations=3, subbands=(7,), pointing_dec_deg=dec_deg),
        tmp_path / "in",
    )
    (f,) = scan(tmp_path / "in")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        template = write_template(f.path, tmp_path / "g" / "template.ms")
    assert oct((tmp_path / "g").stat().st_mode & 0o777) == "0o700"
    uvw, expected, ha = ms_uvw_reference(template)
    assert np.abs(ha).max() < 1e-9, "every field is on the meridian when its data were taken"
    err = np.abs(uvw - expected).max()
    assert err < UVW_TOLERANCE_M, f"max |dUVW| = {err * 1e3:.3f} mm at Dec {dec_deg}"
    longest = np.linalg.norm(uvw, axis=1).max()
    assert longest > 1000, "the test array has km baselines, so a frame error would show"
