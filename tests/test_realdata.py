"""Generic mode on real UVH5 files from other telescopes (tests/data/realdata: HERA, PAPER, MWA,
a baseline-dependent-averaging file): each, cut into subbands by frequency in its own encoding,
converts to what pyuvdata's ``write_ms(force_phase=True)`` makes of the uncut file, or is refused
with one line naming the file and the reason."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110ms.telescope import N_SUBBANDS

from .conftest import convert, run_snakemake
from .msdata import assert_same_ms
from .realdata import FILES, REALDATA, cut_into_subbands, pyuvdata_reference_ms

pytestmark = pytest.mark.filterwarnings("ignore")

#: Files that may be refused, and the reason their refusal must give.
REFUSED = {}


@pytest.mark.parametrize("name", FILES)
def test_real_file_converts_as_pyuvdata_write_ms_force_phase(name, tmp_path):
    src = REALDATA / name
    input_dir = tmp_path / "input"
    cut = cut_into_subbands(src, input_dir)
    config = {
        "telescope": "generic",
        "generic_phasing": "first_zenith",
        "spw_layout": "single",
        "incomplete_groups": "convert" if len(cut) < N_SUBBANDS else "skip",
    }
    if name in REFUSED:
        proc = run_snakemake(tmp_path, "--cores", "2", config=config | {"input_dir": input_dir})
        assert REFUSED[name] in proc.stdout
        return
    out = convert(input_dir, tmp_path, **config)
    (ms,) = out.glob("*.ms")
    reference = pyuvdata_reference_ms(src, tmp_path / "reference.ms")
    assert_same_ms(ms, reference)


def test_unprojected_data_are_refused_by_default_in_one_line_naming_the_key(tmp_path):
    input_dir = tmp_path / "input"
    cut_into_subbands(REALDATA / "zen.2456865.60537.xy.uvcRREAA.uvh5", input_dir)
    config = {"input_dir": input_dir, "telescope": "generic", "incomplete_groups": "convert"}
    proc = run_snakemake(tmp_path, "--cores", "2", config=config, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout
    (row,) = [line for line in proc.stdout.splitlines() if "FAILED" in line and "sb00" in line]
    assert "_sb00.hdf5: unprojected (drift-scan) data" in row and "generic_phasing" in row


def test_meridian_per_integration_gives_a_field_per_integration_as_pyuvdata(tmp_path):
    """The fast path equals pyuvdata's (the reference writer) with a meridian field per
    integration at the zenith's declination, visibilities unrotated."""
    from dsa110ms import casa
    from dsa110ms.ms.template import write_pyuvdata_ms

    src = REALDATA / "zen.2458661.23480.HH.uvh5"
    config = {"telescope": "generic", "generic_phasing": "meridian_per_integration"}
    input_dir = tmp_path / "input"
    cut_into_subbands(src, input_dir)
    out = convert(input_dir, tmp_path, spw_layout="single", incomplete_groups="convert", **config)
    (ms,) = out.glob("*.ms")
    reference = write_pyuvdata_ms(src, tmp_path / "reference.ms", **config)
    assert_same_ms(ms, reference)
    with casa.table(f"{ms}/FIELD") as fields, casa.table(str(ms)) as main:
        assert fields.nrows() == len(set(main.getcol("TIME"))) == 20
        dec = fields.getcol("PHASE_DIR")[1, 0]  # casatools: (2, 1, nfield)
    # the zenith's declination is the latitude (HERA: -30.72 deg), to within precession
    assert abs(np.degrees(dec).mean() - -30.72) < 0.5


def test_generic_groups_need_not_cover_a_contiguous_band():
    """DSA-110's 16 subbands tile its band (a gap is an error); other telescopes' files may
    leave gaps between them, as a 16-file group of cut channels with a gap does."""
    from dsa110ms.ms.join_group import JoinOptions
    from dsa110ms.settings import Settings

    generic = Settings.from_config({"telescope": "generic"})
    assert not JoinOptions.from_settings(generic, contiguous=True).contiguous
    assert JoinOptions.from_settings(Settings.from_config({}), contiguous=True).contiguous
