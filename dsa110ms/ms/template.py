"""A group's template MS, and pyuvdata's MS of a whole subband (the reference writer).

The 16 subbands of a group share their rows (times, baselines), fields, UVW, antennas and every
subtable; only the spectral columns and the SPECTRAL_WINDOW row differ. The *template* holds what
they share, computed once per group with pyuvdata from one subband read at a single channel: the
main table's row columns (TIME, ANTENNA1/2, UVW, FIELD_ID, ...) and all subtables, as
``write_ms`` writes them, completed by :mod:`dsa110ms.ms.layout`. The join fills in the spectral
columns from the parts (:mod:`dsa110ms.ms.part`) and one SPECTRAL_WINDOW row per part.

:func:`write_pyuvdata_ms` of a whole subband is what the previous design wrote as a part; tests
use it as the reference the fast path must equal, and the benchmark as the seed's design.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from dsa110ms.errors import InputFileError
from dsa110ms.ms.layout import complete_part_metadata, write_pointing
from dsa110ms.owned import remove_owned
from dsa110ms.phasecenter import PER_INTEGRATION, PhaseCenter
from dsa110ms.rawuvh5 import (
    check_written,
    combined_digest,
    file_geometry_items,
    filter_failure_in,
)
from dsa110ms.telescope import MS_TELESCOPE_NAME
from dsa110ms.uvh5 import expected_warnings_ignored, prepare, read_subband

log = logging.getLogger(__name__)

IMAGING_COLUMNS = ("none", "model_corrected")
#: Main-table keywords of a template: the file it was made from and that file's geometry digest
#: (:func:`dsa110ms.rawuvh5.combined_digest`), which every part of the group must share, and
#: its digest per item (JSON; :func:`dsa110ms.rawuvh5.geometry_items`), to name what differs.
SOURCE_KEYWORD = "dsa110ms_template_source"
DIGEST_KEYWORD = "dsa110ms_geometry_digest"
ITEMS_KEYWORD = "dsa110ms_geometry_items"
#: Main-table keyword of a template: its FIELDs' names and PHASE_DIRs (JSON), which a part
#: rotated to one FIELD records too (:func:`dsa110ms.ms.part.write_part`), for the join to
#: check that they agree.
PHASE_CENTER_KEYWORD = "dsa110ms_phase_center"


def write_pyuvdata_ms(
    uvh5_path: str | os.PathLike,
    ms_path: str | os.PathLike,
    *,
    telescope: str = "dsa110",
    generic_phasing: str = "refuse",
    keep_autocorrelations: bool = True,
    imaging_columns: str = "none",
    freq_chans=None,
    ms_telescope_name: str = MS_TELESCOPE_NAME,
    phase_center: PhaseCenter = PER_INTEGRATION,
) -> Path:
    """One subband file (or the channels ``freq_chans`` of it) as an MS at ``ms_path``, by
    pyuvdata: read, DSA-110 fix-ups (:mod:`dsa110ms.uvh5`), ``write_ms``, then
    :func:`dsa110ms.ms.layout.complete_part_metadata`.

    One SPW with ascending channels; in DSA-110 mode one FIELD per integration at the meridian
    and per-integration UVW, or the one FIELD of ``phase_center`` (visibilities rotated to it,
    :mod:`dsa110ms.phasecenter`). ``imaging_columns="model_corrected"`` adds MODEL_DATA = 0 and
    CORRECTED_DATA = DATA.
    """
    if imaging_columns not in IMAGING_COLUMNS:
        raise ValueError(f"imaging_columns must be one of {IMAGING_COLUMNS}")
    uvh5_path, ms_path = str(uvh5_path), Path(ms_path)
    ms_path.parent.mkdir(parents=True, exist_ok=True)
    with expected_warnings_ignored():
        uv = read_subband(uvh5_path, freq_chans=freq_chans)
        try:
            pointing = prepare(
                uv,
                uvh5_path,
                telescope=telescope,
                generic_phasing=generic_phasing,
                keep_autocorrelations=keep_autocorrelations,
                ms_telescope_name=ms_telescope_name,
                phase_center=phase_center,
            )
            extra = {}
            if imaging_columns == "model_corrected":
                model = np.zeros_like(uv.data_array)
                extra = {"model_data": model, "corrected_data": uv.data_array}
            uv.write_ms(str(ms_path), **extra)
        except (ValueError, NotImplementedError, KeyError) as exc:  # what the file holds
            raise InputFileError(
                f"{uvh5_path}: pyuvdata cannot write it as a Measurement Set "
                f"({type(exc).__name__}: {exc})"
            ) from exc
    complete_part_metadata(ms_path)
    if pointing is not None:
        write_pointing(ms_path, pointing)
    return ms_path


def write_template(
    uvh5_path: str | os.PathLike,
    template_path: str | os.PathLike,
    *,
    telescope: str = "dsa110",
    generic_phasing: str = "refuse",
    keep_autocorrelations: bool = True,
    ms_telescope_name: str = MS_TELESCOPE_NAME,
    phase_center: PhaseCenter = PER_INTEGRATION,
) -> Path:
    """The group's template MS from one of its subband files (module docstring), at
    ``template_path`` (must not exist; its directory is created, mode 0700, if missing)."""
    from casacore import tables

    template_path = Path(template_path)
    template_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = template_path.with_name(f".{template_path.name}.writing")
    # a crashed attempt's leftover, inside the group's scratch (ours: the instance is marked)
    remove_owned(staging, template_path.parent.parent)
    # storage never written reads as zeros through pyuvdata too: refused here as by the parts
    check_written(str(uvh5_path))
    try:
        write_pyuvdata_ms(
            uvh5_path,
            staging,
            telescope=telescope,
            generic_phasing=generic_phasing,
            keep_autocorrelations=keep_autocorrelations,
            freq_chans=[0],
            ms_telescope_name=ms_telescope_name,
            phase_center=phase_center,
        )
    except InputFileError as exc:
        # HDF5 through pyuvdata says only "filter returned failure": name the dataset and chunk
        failure = filter_failure_in(str(uvh5_path)) if isinstance(exc.__cause__, OSError) else None
        if failure is None:
            raise
        raise failure from exc
    items = file_geometry_items(str(uvh5_path), telescope=telescope)
    with tables.table(str(staging), readonly=False, ack=False) as tb:
        tb.putkeywords(
            {
                SOURCE_KEYWORD: str(uvh5_path),
                DIGEST_KEYWORD: combined_digest(items),
                ITEMS_KEYWORD: json.dumps(items),
                PHASE_CENTER_KEYWORD: json.dumps(field_of(staging)),
            }
        )
        log.info("%s: template of %d rows -> %s", uvh5_path, tb.nrows(), template_path)
    os.rename(staging, template_path)
    return template_path


def field_of(ms_path: str | os.PathLike) -> dict:
    """An MS's FIELD as the template records it (:data:`PHASE_CENTER_KEYWORD`): one-field
    templates only need to agree with their parts' plan, so the name and the direction (ICRS
    radians) of the first FIELD and how many there are."""
    from casacore import tables

    with tables.table(f"{ms_path}/FIELD", ack=False) as tb:
        return {
            "fields": tb.nrows(),
            "name": str(tb.getcell("NAME", 0)),
            "direction": [float(x) for x in tb.getcell("PHASE_DIR", 0).reshape(-1)],
        }
