"""Storage of the array columns we write with python-casacore (parts and joined MSs).

pyuvdata's ``write_ms`` stores DATA, FLAG, WEIGHT_SPECTRUM, WEIGHT and SIGMA as variable-shape
columns (``TiledShapeStMan``), which casacore writes at ~300 MB/s here, WEIGHT and SIGMA (two
floats a row) slowest of all. Every row of a part, and of a joined DSA-110 MS, has the same shape,
so we declare these columns with a fixed shape in ``TiledColumnStMan``: same values, ~1.3 GB/s.
Fixed-shape data columns are ordinary in MSs (CASA's simulator writes them); the parts of a
group all have the same channels and polarizations (checked before joining).
"""

from __future__ import annotations

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
