"""Writing one subband file as one Measurement Set part (one SPW) on scratch."""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from .errors import ScratchError
from .msfix import complete_part_metadata
from .scratch import make_private_dir
from .uvh5 import prepare, read_subband

log = logging.getLogger(__name__)

#: pyuvdata warnings that are expected for every DSA-110 file and say nothing about this one.
EXPECTED_WARNINGS = (
    # Files store meridian UVW for "drift" data; we replace them.
    "The uvw_array does not match the expected values",
    # The correlator lists baselines in its own order; pyuvdata writes ant1 < ant2 rows.
    "UVData object contains a mix of baseline conjugation states",
    # Correlator data are uncalibrated.
    "Writing in the MS file that the units of the data are uncalib",
)


IMAGING_COLUMNS = ("none", "model_corrected")
#: An MS part takes about as much space as its UVH5 file (same visibilities, flags and weights)
#: plus subtables; this much more is asked for before writing.
SPACE_MARGIN_BYTES = 2_000_000


def check_free_space(uvh5_path: str, part_path: Path) -> None:
    """Refuse to start a part that cannot fit on scratch, with the needed and available sizes."""
    needed = int(os.path.getsize(uvh5_path) * 1.1) + SPACE_MARGIN_BYTES
    free = shutil.disk_usage(part_path.parent).free
    if free < needed:
        raise ScratchError(
            f"{part_path.parent}: not enough space for the part of {uvh5_path}: needs "
            f"{needed / 1e6:.1f} MB, {free / 1e6:.1f} MB available"
        )


def write_part(
    uvh5_path: str | os.PathLike,
    part_path: str | os.PathLike,
    *,
    telescope: str = "dsa110",
    keep_autocorrelations: bool = True,
    imaging_columns: str = "none",
    crash: bool = False,
) -> Path:
    """Convert one subband file into an MS part at ``part_path`` (must not exist yet); its
    directory is created (or made) private, mode 0700.

    The part has one SPW with ascending channels; in DSA-110 mode one FIELD per integration at
    the meridian phase centre and per-integration UVW (see :mod:`dsa110ms.uvh5`). With
    ``imaging_columns="model_corrected"`` it also has MODEL_DATA = 0 and CORRECTED_DATA = DATA.
    Metadata pyuvdata leaves incomplete are then fixed (:mod:`dsa110ms.msfix`).
    ``crash`` (test facility, :mod:`dsa110ms.faults`): die half-way, leaving a partial part.
    """
    if imaging_columns not in IMAGING_COLUMNS:
        raise ValueError(f"imaging_columns must be one of {IMAGING_COLUMNS}")
    uvh5_path, part_path = str(uvh5_path), Path(part_path)
    make_private_dir(part_path.parent)  # the group's scratch directory, mode 0700
    check_free_space(uvh5_path, part_path)
    with warnings.catch_warnings():
        for message in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        uv = read_subband(uvh5_path)
        prepare(uv, uvh5_path, telescope=telescope, keep_autocorrelations=keep_autocorrelations)
        log.info(
            "%s: %d times x %d baselines x %d channels (%.6f-%.6f MHz) -> %s",
            uvh5_path,
            uv.Ntimes,
            uv.Nbls,
            uv.Nfreqs,
            uv.freq_array.min() / 1e6,
            uv.freq_array.max() / 1e6,
            part_path,
        )
        extra = {}
        if imaging_columns == "model_corrected":
            extra = {"model_data": np.zeros_like(uv.data_array), "corrected_data": uv.data_array}
        try:
            uv.write_ms(str(part_path), **extra)
        except Exception as exc:
            free = shutil.disk_usage(part_path.parent).free
            if free < SPACE_MARGIN_BYTES:
                raise ScratchError(
                    f"{part_path.parent}: no space left writing the part of {uvh5_path} "
                    f"({free / 1e6:.1f} MB free): {exc}"
                ) from exc
            raise
    if crash:
        shutil.rmtree(part_path / "SPECTRAL_WINDOW")  # a part missing a subtable, as if cut off
        log.error("%s: injected crash while writing %s", uvh5_path, part_path)
        os._exit(70)  # die like a killed process: no cleanup, no exception handling
    complete_part_metadata(part_path)
    return part_path
