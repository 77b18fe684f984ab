"""Assembly: a group's template and parts written as one MS, in one pass over the data
(:func:`assemble`), or by ``casatasks.concat`` of one-SPW MSs (:func:`concat_reference`, the
reference). The flow around it (locks, staging, validation, publication) is
:mod:`dsa110ms.ms.join_group`."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dsa110ms import casa
from dsa110ms.errors import TransientJoinError
from dsa110ms.ms.layout import (
    EMPTY_COLUMNS,
    IMAGING_COLUMN_COMMENTS,
    REPLACED_COLUMNS,
    ROW_ARRAYS,
    fixed_array_columns,
    number_spectral_windows,
    weights_from_spectrum,
    write_spectral_windows,
)
from dsa110ms.ms.part import Part, open_part

log = logging.getLogger(__name__)


def concat_parts(parts: Sequence[str | os.PathLike], joined: Path) -> None:
    """The reference join: ``casatasks.concat`` of the parts, in the given (SPW) order."""
    try:
        casa.tasks().concat(vis=[str(p) for p in parts], concatvis=str(joined))
    except Exception as exc:  # CASA raises bare RuntimeError/AssertionError for everything
        raise TransientJoinError(f"{joined}: casatasks.concat failed: {exc}") from exc
    if not joined.is_dir():
        raise TransientJoinError(f"{joined}: casatasks.concat returned without writing the MS")
    if len(parts) > 1:
        number_spectral_windows(joined)


#: Rows joined at a time by the single-SPW join: ~50 MB of DATA at 768 channels, so the
#: job stays well under 1 GB with every column of the chunk in memory.
ROWS_PER_CHUNK = 4096


def assemble(
    template: str | os.PathLike,
    parts: Sequence[str | os.PathLike],
    joined: str | os.PathLike,
    *,
    spw_layout: str = "per_subband",
    imaging_columns: str = "none",
) -> None:
    """Write the MS of a group at ``joined`` from its template and its parts (lowest frequency
    first), in one pass over the data.

    ``spw_layout="per_subband"``: the template's rows repeated once per part, part k's spectral
    columns in the k-th block with DATA_DESC_ID = k; one SPECTRAL_WINDOW and DATA_DESCRIPTION row
    per part and the FEED rows repeated for every SPW. This is exactly what ``casatasks.concat``
    makes of the parts written as MSs by pyuvdata (tested; only HISTORY differs).
    ``"single"``: the template's rows once, each row's spectra joined along the channel axis,
    one SPW holding every channel; WEIGHT, SIGMA and FLAG_ROW summarize the whole row.
    ``imaging_columns="model_corrected"`` adds MODEL_DATA = 0 and CORRECTED_DATA = DATA.

    The parts must be the template's rows (checked by the caller, :func:`check_parts`).
    """
    from casacore import tables

    parts, joined = [open_part(p) for p in parts], str(joined)
    single = spw_layout == "single"
    # A file copy in this process: casacore's Table.copy(deep=True, valuecopy=False) runs
    # `cp -r '<src>' '<dst>'` through a shell, and paths are never given to a shell.
    shutil.copytree(template, joined, symlinks=True)
    chan_freqs = [p.chan_freq for p in parts]
    chan_widths = [np.asarray(p.array("CHAN_WIDTH")) for p in parts]
    npol = parts[0].manifest["polarizations"]
    nchan = sum(len(f) for f in chan_freqs) if single else len(chan_freqs[0])
    with tables.table(joined, readonly=False, ack=False) as out:
        nrow = out.nrows()
        spectral = ["DATA", "FLAG", "WEIGHT_SPECTRUM"]
        if imaging_columns == "model_corrected":
            spectral += ["MODEL_DATA", "CORRECTED_DATA"]
        _replace_array_columns(out, spectral, (nchan, npol), npol)
        if single:
            _fill_single_spw(out, parts, spectral)
        else:
            _fill_per_subband(out, parts, spectral)
    write_spectral_windows(template, joined, chan_freqs, chan_widths, single=single)
    log.info("assembled %s from %d parts: %d x %d rows", joined, len(parts), nrow, len(parts))


def _replace_array_columns(out, spectral: list[str], cell: tuple[int, int], npol: int) -> None:
    """Drop the template's variable-shape array columns; add fixed-shape ones
    (:mod:`dsa110ms.ms.layout`), keeping the template's descriptions (comments, units)."""
    from casacore import tables

    descs = {c: out.getcoldesc(c) for c in REPLACED_COLUMNS}
    for c, what in IMAGING_COLUMN_COMMENTS.items():
        if c in spectral:
            descs[c] = dict(descs["DATA"], comment=what, keywords={})
    out.removecols([c for c in REPLACED_COLUMNS if c in out.colnames()])
    shapes = {c: cell for c in spectral} | {"WEIGHT": (npol,), "SIGMA": (npol,)}
    fixed, dminfo = fixed_array_columns(descs, shapes)
    for dm in dminfo:
        name = str(dm["COLUMNS"][0])
        out.addcols(tables.maketabdesc({"name": name, "desc": fixed[name]}), dm)


def _fill_per_subband(out, parts: list[Part], spectral: list[str]) -> None:
    nrow = out.nrows()
    buffers: dict[str, np.ndarray] = {}  # one part's columns at a time, reused
    filled = (*spectral, *EMPTY_COLUMNS, "WEIGHT", "SIGMA", "FLAG_ROW")
    rows = {c: out.getcol(c) for c in out.colnames() if c not in filled}
    out.addrows(nrow * (len(parts) - 1))
    for k, p in enumerate(parts):
        start = k * nrow
        if k:
            for c, values in rows.items():
                out.putcol(c, values, start, nrow)
        out.putcol("DATA_DESC_ID", np.full(nrow, k, dtype=np.int32), start, nrow)
        for c in ROW_ARRAYS:
            buffers[c] = p.read_into(c, buffers.get(c))
            out.putcol(c, buffers[c], start, nrow)
        if "MODEL_DATA" in spectral:
            zeros = buffers.setdefault("MODEL_DATA", np.zeros_like(buffers["DATA"]))
            out.putcol("MODEL_DATA", zeros, start, nrow)
            out.putcol("CORRECTED_DATA", buffers["DATA"], start, nrow)


def _fill_single_spw(out, parts: list[Part], spectral: list[str]) -> None:
    nrow = out.nrows()
    for start in range(0, nrow, ROWS_PER_CHUNK):
        stop = min(start + ROWS_PER_CHUNK, nrow)
        n = stop - start
        cells = {
            c: np.concatenate([p.rows(c, start, stop) for p in parts], axis=1)
            for c in ("DATA", "FLAG", "WEIGHT_SPECTRUM")
        }
        for c, values in cells.items():
            out.putcol(c, values, start, n)
        if "MODEL_DATA" in spectral:
            out.putcol("MODEL_DATA", np.zeros_like(cells["DATA"]), start, n)
            out.putcol("CORRECTED_DATA", cells["DATA"], start, n)
        weight, sigma = weights_from_spectrum(cells["WEIGHT_SPECTRUM"], cells["FLAG"])
        out.putcol("WEIGHT", weight, start, n)
        out.putcol("SIGMA", sigma, start, n)
        out.putcol("FLAG_ROW", cells["FLAG"].all(axis=(1, 2)), start, n)


def concat_reference(
    template: str | os.PathLike,
    parts: Sequence[str | os.PathLike],
    joined: Path,
    workdir: Path,
    *,
    imaging_columns: str = "none",
) -> None:
    """The reference join: each part completed into a one-SPW MS (template + part, in
    ``workdir``), then ``casatasks.concat`` of those, in SPW order."""
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    singles = []
    for k, p in enumerate(parts):
        singles.append(workdir / f"spw{k:02d}.ms")
        assemble(template, [p], singles[-1], imaging_columns=imaging_columns)
    concat_parts(singles, joined)
