"""The MS as this workflow writes it, in one place: the columns it writes itself, their value types
and storage, and the subtables and metadata it writes or completes beside pyuvdata's.

Storage of the array columns we write with python-casacore (parts and joined MSs).
pyuvdata's ``write_ms`` stores DATA, FLAG, WEIGHT_SPECTRUM, WEIGHT and SIGMA as variable-shape
columns (``TiledShapeStMan``), which casacore writes at ~300 MB/s here, WEIGHT and SIGMA (two
floats a row) slowest of all. Every row of a part, and of a joined DSA-110 MS, has the same shape,
so we declare these columns with a fixed shape in ``TiledColumnStMan``: same values, ~1.3 GB/s.
Fixed-shape data columns are ordinary in MSs (CASA's simulator writes them); the parts of a
group all have the same channels and polarizations (checked before joining).

What pyuvdata's ``write_ms`` leaves empty or inconsistent is completed here:
:func:`complete_part_metadata` is applied to every MS pyuvdata writes (a group's template, the
reference MSs of the tests); part jobs compute WEIGHT, SIGMA and FLAG_ROW with
:func:`weights_from_spectrum`, the same function, so every join method gives the same values:

- ``FLAG_ROW`` = all channels and polarizations flagged (pyuvdata never sets it);
- ``WEIGHT`` = mean of ``WEIGHT_SPECTRUM`` over unflagged channels, per polarization (0 where all
  are flagged); ``SIGMA`` = 1/sqrt(WEIGHT), or 0 where WEIGHT is 0 (pyuvdata writes 1 and 1);
- ``OBSERVATION.TIME_RANGE`` = first start to last end of the integrations (pyuvdata: [0, 0]);
- ``STATE``: one row, on-source target observation, so that ``STATE_ID`` = 0 refers to something
  (pyuvdata leaves the table empty while every row says STATE_ID = 0).

A joined MS gets one SPECTRAL_WINDOW and DATA_DESCRIPTION row per SPW and its FEED rows repeated
per SPW (:func:`write_spectral_windows`), as ``casatasks.concat`` makes them.
"""

from __future__ import annotations

import os

import numpy as np

#: Columns with (nchan, npol) cells, and the value type of each.
SPECTRAL_COLUMNS = {
    "DATA": "complex",
    "MODEL_DATA": "complex",
    "CORRECTED_DATA": "complex",
    "FLAG": "boolean",
    "WEIGHT_SPECTRUM": "float",
}
#: Columns with (npol,) cells.
POLARIZATION_COLUMNS = {"WEIGHT": "float", "SIGMA": "float"}
#: Bytes of one tile; ~1 MB keeps a tile of DATA within casacore's default cache.
TILE_BYTES = 1 << 20
#: The in-memory type of each value type we write (a part's arrays are already in it).
VALUE_DTYPES = {"complex": np.complex64, "float": np.float32, "boolean": np.bool_}
_VALUE_BYTES = {t: np.dtype(d).itemsize for t, d in VALUE_DTYPES.items()}
#: The main-table columns a part carries (one file each, in the template's row order); the join
#: writes them into the MS as they are.
ROW_ARRAYS = ("DATA", "FLAG", "WEIGHT_SPECTRUM", "WEIGHT", "SIGMA", "FLAG_ROW")


def _tile(cell_shape: tuple[int, ...], value_type: str) -> list[int]:
    """Tile shape, casacore (Fortran) axis order: whole cells, as many rows as fit TILE_BYTES."""
    cell = int(np.prod(cell_shape)) * _VALUE_BYTES[value_type]
    return [*reversed(cell_shape), max(1, TILE_BYTES // cell)]


def fixed_array_columns(
    columns: dict[str, dict], shapes: dict[str, tuple[int, ...]]
) -> tuple[dict, list[dict]]:
    """Descriptions and data managers for fixed-shape tiled array columns.

    ``columns``: name -> a python-casacore column description (e.g. the template's, with its
    comment and keywords) or ``{}``; ``shapes``: name -> cell shape, C order (nchan, npol).
    Each column gets its own TiledColumnStMan.
    """
    descs, dminfo = {}, []
    types = SPECTRAL_COLUMNS | POLARIZATION_COLUMNS
    for name, shape in shapes.items():
        desc = dict(columns.get(name) or {})
        value_type = types[name]
        group = f"Tiled{name.title().replace('_', '')}"
        desc.update(
            valueType=value_type,
            ndim=len(shape),
            shape=np.array(shape, dtype=np.int32),
            option=5,  # fixed shape, direct
            dataManagerType="TiledColumnStMan",
            dataManagerGroup=group,
            maxlen=0,
            _c_order=True,
        )
        desc.setdefault("comment", "")
        desc.setdefault("keywords", {})
        descs[name] = desc
        dminfo.append(
            {
                "TYPE": "TiledColumnStMan",
                "NAME": group,
                "SEQNR": 0,
                "SPEC": {"DEFAULTTILESHAPE": np.array(_tile(shape, value_type), dtype=np.int32)},
                "COLUMNS": np.array([name]),
            }
        )
    return descs, dminfo


#: Bucket size of the StandardStMan holding a joined MS's per-row scalars (ANTENNA1/2,
#: DATA_DESC_ID, FLAG_ROW): ~1 GB/s to write, where pyuvdata's 128-byte buckets give ~0.1.
ROW_BUCKET_BYTES = 1 << 20


def row_scalar_storage(columns: list[str]) -> dict:
    """One StandardStMan of :data:`ROW_BUCKET_BYTES` buckets for ``columns``."""
    return {
        "TYPE": "StandardStMan",
        "NAME": "RowScalars",
        "SPEC": {"BUCKETSIZE": ROW_BUCKET_BYTES},
        "COLUMNS": np.array(columns),
    }


#: Per-channel columns of the SPECTRAL_WINDOW table (RESOLUTION and EFFECTIVE_BW are the
#: channel width, as pyuvdata writes them).
WIDTH_COLUMNS = ("CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION")


#: Columns of the template's main table the join replaces with the parts' (fixed-shape) columns.
REPLACED_COLUMNS = ("DATA", "FLAG", "WEIGHT_SPECTRUM", "WEIGHT", "SIGMA")


#: MODEL_DATA and CORRECTED_DATA are described like DATA, with the MS definition's comments.
IMAGING_COLUMN_COMMENTS = {
    "MODEL_DATA": "The model data column",
    "CORRECTED_DATA": "The corrected data column",
}


#: Columns of the template's main table that hold no values (pyuvdata never fills them).
EMPTY_COLUMNS = ("FLAG_CATEGORY",)


ON_SOURCE = "OBSERVE_TARGET#ON_SOURCE"


def weights_from_spectrum(weight_spectrum: np.ndarray, flag: np.ndarray):
    """(WEIGHT, SIGMA) per row and polarization from (nrow, nchan, npol) arrays."""
    # einsum sums over channels ~5x faster than .sum(axis=1) on (nrow, nchan, npol)
    n_good = np.einsum("icp->ip", (~flag).view(np.uint8), dtype=np.int32)
    total = np.einsum("icp->ip", np.where(flag, np.float32(0), weight_spectrum))
    weight = np.divide(total, n_good, out=np.zeros(total.shape), where=n_good > 0)
    sigma = np.divide(1.0, np.sqrt(weight), out=np.zeros(weight.shape), where=weight > 0)
    return weight.astype(np.float32), sigma.astype(np.float32)


def complete_part_metadata(ms_path: str | os.PathLike) -> None:
    """Fix FLAG_ROW, WEIGHT/SIGMA, OBSERVATION.TIME_RANGE and STATE of an MS, in place."""
    from casacore import tables

    path = str(ms_path)
    with tables.table(path, readonly=False, ack=False) as main:
        flag = main.getcol("FLAG")
        main.putcol("FLAG_ROW", flag.all(axis=(1, 2)))
        weight, sigma = weights_from_spectrum(main.getcol("WEIGHT_SPECTRUM"), flag)
        main.putcol("WEIGHT", weight)
        main.putcol("SIGMA", sigma)
        time, interval = main.getcol("TIME"), main.getcol("INTERVAL")
        main.putcol("STATE_ID", np.zeros(main.nrows(), dtype=np.int32))
    with tables.table(f"{path}/OBSERVATION", readonly=False, ack=False) as obs:
        span = [float((time - interval / 2).min()), float((time + interval / 2).max())]
        obs.putcol("TIME_RANGE", np.tile(span, (obs.nrows(), 1)))
    with tables.table(f"{path}/STATE", readonly=False, ack=False) as state:
        if state.nrows() == 0:
            state.addrows(1)
        state.putcol("SIG", np.ones(state.nrows(), dtype=bool))
        state.putcol("REF", np.zeros(state.nrows(), dtype=bool))
        state.putcol("CAL", np.zeros(state.nrows()))
        state.putcol("LOAD", np.zeros(state.nrows()))
        state.putcol("SUB_SCAN", np.zeros(state.nrows(), dtype=np.int32))
        state.putcol("OBS_MODE", [ON_SOURCE] * state.nrows())
        state.putcol("FLAG_ROW", np.zeros(state.nrows(), dtype=bool))


def write_pointing(ms_path: str | os.PathLike, pointing) -> None:
    """POINTING: where every antenna pointed at each integration (``pointing``: a
    :class:`dsa110ms.geometry.FieldDirections`, ICRS, one per integration), TRACKING True.

    pyuvdata's ``write_ms`` writes the rows (every antenna at every integration: TIME, INTERVAL,
    ANTENNA_ID) but DIRECTION and TARGET are placeholders, (0, +90 deg) in cells of the
    transposed shape [1, 2]; an MS holds them as [2, NUM_POLY + 1], here (1, 2) in C order.
    Primary-beam-aware imaging (tclean ``usepointing=True``) reads them."""
    from casacore import tables

    with tables.table(f"{ms_path}/POINTING", readonly=False, ack=False) as tb:
        times = tb.getcol("TIME")  # s (MJD), the integration centres
        steps = np.unique(times)
        if len(steps) != len(pointing.times_jd):
            raise ValueError(
                f"{ms_path}: POINTING has {len(steps)} times for {len(pointing.times_jd)} "
                "integrations"
            )
        index = np.searchsorted(steps, times)  # both ascending: k-th time, k-th integration
        directions = np.stack([pointing.icrs_ra[index], pointing.icrs_dec[index]], axis=1)
        for column in ("DIRECTION", "TARGET"):
            info = dict(tb.getcolkeyword(column, "MEASINFO"), Ref="ICRS")
            tb.putcolkeyword(column, "MEASINFO", info)
            tb.putcol(column, directions[:, None, :])
        tb.putcol("TRACKING", np.ones(len(times), dtype=bool))
        tb.putcol("NAME", [""] * len(times))


def number_spectral_windows(ms: str | os.PathLike) -> None:
    """SPW k named ``SPWk`` with ``ASSOC_SPW_ID = [k]``, as pyuvdata writes a multi-SPW MS and
    needs to read one back (it takes ASSOC_SPW_ID as the SPW's number). The rows copied from a
    one-SPW MS all say ``SPW1`` and ``[1]``; pyuvdata then cannot read the MS, and listobs
    names every SPW alike."""
    from casacore import tables

    with tables.table(f"{ms}/SPECTRAL_WINDOW", readonly=False, ack=False) as spw:
        n = spw.nrows()
        spw.putcol("NAME", [f"SPW{k}" for k in range(n)])
        if "ASSOC_SPW_ID" in spw.colnames():
            for k in range(n):
                spw.putcell("ASSOC_SPW_ID", k, np.array([k], dtype=np.int32))


def write_spectral_windows(template, joined: str, chan_freqs, chan_widths, *, single: bool):
    """SPECTRAL_WINDOW rows (the template's row with each SPW's channels), one DATA_DESCRIPTION
    row per SPW, and the FEED rows repeated for every SPW beyond the first (as concat does)."""
    from casacore import tables

    if single:
        chan_freqs, chan_widths = [np.concatenate(chan_freqs)], [np.concatenate(chan_widths)]
    n = len(chan_freqs)
    with (
        tables.table(f"{template}/SPECTRAL_WINDOW", ack=False) as src,
        tables.table(f"{joined}/SPECTRAL_WINDOW", readonly=False, ack=False) as spw,
    ):
        for _ in range(n - 1):
            src.copyrows(spw)
        for k, (freqs, widths) in enumerate(zip(chan_freqs, chan_widths, strict=True)):
            spw.putcell("CHAN_FREQ", k, freqs)
            for c in WIDTH_COLUMNS:
                spw.putcell(c, k, widths)
            spw.putcell("NUM_CHAN", k, len(freqs))
            spw.putcell("TOTAL_BANDWIDTH", k, float(np.sum(widths)))
            spw.putcell("REF_FREQUENCY", k, float(freqs[0]))  # as pyuvdata: first channel
    if n == 1:
        return
    number_spectral_windows(joined)
    with tables.table(f"{joined}/DATA_DESCRIPTION", readonly=False, ack=False) as dd:
        dd.addrows(n - 1)
        dd.putcol("SPECTRAL_WINDOW_ID", np.arange(n, dtype=np.int32))
        dd.putcol("POLARIZATION_ID", np.zeros(n, dtype=np.int32))
        dd.putcol("FLAG_ROW", np.zeros(n, dtype=bool))
    with tables.table(f"{joined}/FEED", readonly=False, ack=False) as feed:
        nfeed = feed.nrows()
        rows = {c: feed.getcol(c) for c in feed.colnames()}
        for k in range(1, n):
            feed.addrows(nfeed)
            for c, values in rows.items():
                feed.putcol(c, values, k * nfeed, nfeed)
            feed.putcol("SPECTRAL_WINDOW_ID", np.full(nfeed, k, dtype=np.int32), k * nfeed, nfeed)
