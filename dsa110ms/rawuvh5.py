"""Reading a UVH5 subband's arrays with h5py alone, in the order pyuvdata's ``write_ms`` writes
them.

A part job needs the visibilities, flags and sample counts of one subband, nothing that depends
on the sky: the group's geometry (fields, UVW, antennas) is computed once per group by the
template job (:mod:`dsa110ms.ms.template`) with pyuvdata. Importing pyuvdata and astropy costs a
job ~3 s; h5py and numpy ~0.3 s, so the 16 part jobs of a group read their files here.

What pyuvdata (3.2) does between reading a file and writing an MS, reproduced exactly (and tested
against it, ``tests/test_part.py``):

- visibilities are read in the file's type (complex64, complex128, or the spec's compound integer
  type as complex128), either layout ((Nblts, 1, Nfreqs, Npols) or (Nblts, Nfreqs, Npols));
- autocorrelations of xx/yy/rr/ll/Stokes with an imaginary part are replaced by their absolute
  value (the reader's default ``fix_autos=True``; :func:`fix_autos`);
- generic mode, ``generic_phasing: first_zenith``: unprojected rows are rephased to the zenith of
  the first time (``write_ms(force_phase=True)``; :class:`WRotation`, the rotation computed by
  :func:`dsa110ms.uvh5.first_zenith_rotation`);
- rows are the file's baseline-times in file order; without autocorrelations, the rows with
  ``ant_1 == ant_2`` are dropped (``select(ant_str="cross")``);
- if the remaining rows mix ``ant_1 < ant_2`` and ``ant_1 > ant_2``, the latter are conjugated,
  their antennas swapped and their cross polarizations exchanged (xy <-> yx;
  ``conjugate_bls("ant1<ant2")``; a lone cross polarization cannot be, and is refused); then
  DATA is written conjugated (``flip_conj``): a row keeps the file's value if it was swapped,
  its complex conjugate if not;
- channels are put in ascending frequency (``reorder_freqs(channel_order="freq")``);
- polarizations in CASA order (``determine_pol_order(order="CASA")``);
- WEIGHT_SPECTRUM = nsamples (float32), FLAG = flags.

The *geometry digest* of a file is a hash of every header item the group's template depends on
(times, baselines, antennas, site, pointing; in generic mode also the file's phase centres and
UVW), kept item by item as well. Parts whose digest differs from the rest of the group's cannot
share the template's rows and are refused at the join, naming the file and the item that differs
(:func:`describe_geometry_difference`).

Stricter than pyuvdata, never different: storage the writer never wrote (a correlator that
stopped after allocating its datasets) reads as HDF5's fill value, zeros unflagged with
nsamples 0 or 1, which pyuvdata would convert without a word; such a file is refused
(:func:`refuse_unwritten`), and so is one whose compressed or checksummed chunks fail to decode
(:class:`dsa110ms.errors.CorruptDataError`, naming the dataset and chunk).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import os
from dataclasses import dataclass

import numpy as np

from dsa110ms.errors import CorruptDataError, InputFileError, UnwrittenDataError
from dsa110ms.ms.layout import VALUE_DTYPES

#: CASA's polarization order (pyuvdata.utils.pol.determine_pol_order, order="CASA").
CASA_POL_ORDER = (1, 2, 3, 4, -1, -3, -4, -2, -5, -7, -8, -6, 0)

#: Header items the template (rows, fields, UVW, antennas) is made from, in any mode.
GEOMETRY_ITEMS = (
    "time_array",
    "integration_time",
    "ant_1_array",
    "ant_2_array",
    "antenna_numbers",
    "antenna_names",
    "antenna_positions",
    "latitude",
    "longitude",
    "altitude",
    "telescope_name",
    "polarization_array",
    "extra_keywords/phase_center_dec",
)
#: Generic mode keeps the file's own phase centres and UVW: they are part of its geometry too.
GENERIC_GEOMETRY_ITEMS = ("uvw_array", "phase_center_id_array", "phase_center_catalog")


@dataclass(frozen=True)
class RowOrder:
    """How the file's baseline-times become MS rows: ``rows`` indexes the file's blts in MS row
    order; ``keep_value`` is True where DATA is the file's value, False where it is conjugated."""

    rows: np.ndarray
    keep_value: np.ndarray
    ant_1: np.ndarray
    ant_2: np.ndarray


def ms_row_order(ant_1: np.ndarray, ant_2: np.ndarray, *, keep_autocorrelations: bool) -> RowOrder:
    """MS rows of a file's baseline-times as pyuvdata writes them (module docstring)."""
    ant_1, ant_2 = np.asarray(ant_1), np.asarray(ant_2)
    rows = np.arange(len(ant_1)) if keep_autocorrelations else np.flatnonzero(ant_1 != ant_2)
    a1, a2 = ant_1[rows], ant_2[rows]
    swapped = a1 > a2
    if not (np.any(a1 < a2) and np.any(swapped)):
        swapped = np.zeros(len(rows), dtype=bool)  # not mixed: pyuvdata swaps nothing
    return RowOrder(
        rows=rows,
        keep_value=swapped,
        ant_1=np.where(swapped, a2, a1).astype(np.int32),
        ant_2=np.where(swapped, a1, a2).astype(np.int32),
    )


def casa_pol_order(polarizations) -> np.ndarray:
    """Indices that put AIPS polarization numbers in CASA order."""
    order = list(CASA_POL_ORDER)
    try:
        return np.argsort([order.index(int(p)) for p in polarizations])
    except ValueError:
        raise ValueError(f"unknown polarization numbers {list(polarizations)}") from None


#: AIPS numbers of the cross polarizations and their conjugates (xy-yx, rl-lr); every other
#: polarization is its own conjugate.
CONJUGATE_POLS = {-3: -4, -4: -3, -7: -8, -8: -7}


def conjugate_pol_order(pols) -> np.ndarray | None:
    """Index in ``pols`` of each polarization's conjugate, which a conjugated baseline's values
    take (pyuvdata's ``conjugate_bls``); None if a cross polarization's conjugate is missing."""
    pols = [int(p) for p in pols]
    try:
        return np.array([pols.index(CONJUGATE_POLS.get(p, p)) for p in pols])
    except ValueError:
        return None


@dataclass(frozen=True)
class SubbandArrays:
    """One subband's main-table arrays in MS row, channel and polarization order.

    ``data`` complex64, ``flag`` bool, ``weight_spectrum`` float32, each (nrow, nchan, npol);
    ``chan_freq`` and ``chan_width`` in Hz, ascending frequency.
    """

    data: np.ndarray
    flag: np.ndarray
    weight_spectrum: np.ndarray
    chan_freq: np.ndarray
    chan_width: np.ndarray
    ant_1: np.ndarray
    ant_2: np.ndarray
    n_times: int
    geometry_digest: str
    geometry_items: dict[str, str]  # hash per item (:func:`geometry_items`)


def _open(path: str):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(f"{path}: cannot be read as UVH5 (HDF5 error: {exc})") from exc


# --- storage never written ----------------------------------------------------------------------


def unwritten_storage(ds) -> tuple[int, int]:
    """(storage units never written, units in all) of an HDF5 dataset.

    Chunked: chunks never allocated, of all the dataset's chunks (HDF5 allocates a chunk when it
    is first written). Contiguous: (1, 1) if its storage was never allocated (HDF5 allocates it at
    the first write), else (0, 1). Compact and empty datasets: (0, 0), their values are in the
    object header. Storage allocated early at creation (``H5Pset_alloc_time`` EARLY) and never
    written cannot be told from written data: HDF5 records no difference; h5py's default, which
    the correlator uses, allocates late."""
    import h5py

    if ds.shape is None or ds.size == 0:
        return 0, 0
    layout = ds.id.get_create_plist().get_layout()
    if layout == h5py.h5d.CHUNKED:
        total = math.prod(math.ceil(n / c) for n, c in zip(ds.shape, ds.chunks, strict=True))
        return total - ds.id.get_num_chunks(), total
    if layout == h5py.h5d.CONTIGUOUS:
        return int(ds.id.get_space_status() == h5py.h5d.SPACE_STATUS_NOT_ALLOCATED), 1
    return 0, 0


def _virtual_gap(ds, path: str) -> str | None:
    """Why some values of a virtual dataset would be its fill value (a source file or dataset
    that does not open, values no source maps), or None."""
    import h5py

    sources = ds.virtual_sources()
    if sum(s.vspace.get_select_npoints() for s in sources) < ds.size:
        return "maps only part of its values to source datasets"
    for source in sources:
        name = source.file_name
        file = path if name == "." else os.path.join(os.path.dirname(path), name)
        try:
            with h5py.File(file, "r") as f:
                f[source.dset_name]  # noqa: B018 - opening it is the check
        except (OSError, KeyError):
            return f"maps values to {name}:{source.dset_name}, which cannot be opened"
    return None


def refuse_unwritten(f, path: str) -> None:
    """Refuse a file (:class:`UnwrittenDataError`, one line naming it and the dataset) if any of
    its datasets holds storage never written (:func:`unwritten_storage`) or a virtual dataset
    whose values would not all come from its sources: HDF5, and pyuvdata reading through it,
    would give the fill value (zeros, unflagged) as if it were data."""
    problems = []

    def visit(name, obj):
        if not hasattr(obj, "dtype"):
            return
        if obj.is_virtual:
            gap = _virtual_gap(obj, path)
            if gap:
                problems.append(f"{obj.name} {gap}")
            return
        missing, total = unwritten_storage(obj)
        if missing and total == 1:
            problems.append(f"{obj.name} was never written (no storage allocated)")
        elif missing:
            problems.append(f"{obj.name} has {missing} of {total} chunks never written")

    f.visititems(visit)
    if problems:
        raise UnwrittenDataError(
            f"{path}: {'; '.join(problems)} (the correlator stopped writing?); not converted"
        )


def check_written(path: str) -> None:
    """:func:`refuse_unwritten` on the file at ``path``."""
    with _open(path) as f:
        refuse_unwritten(f, path)


def _item_bytes(header, name: str) -> bytes:
    item = header.get(name)
    if item is None:
        return b"<absent>"
    if hasattr(item, "visititems"):  # a group (phase_center_catalog): every member, sorted
        out = []
        item.visititems(
            lambda n, o: out.append(n.encode() + _dataset_bytes(o)) if _is_data(o) else None
        )
        return b"".join(sorted(out))
    return _dataset_bytes(item)


def _is_data(obj) -> bool:
    return hasattr(obj, "dtype")


def _dataset_bytes(ds) -> bytes:
    if ds.shape is None:  # an empty (null dataspace) dataset, e.g. an unset catalog entry
        return b"<empty>" + str(ds.dtype).encode()
    value = np.asarray(ds[()])
    if value.dtype.kind == "O":  # variable-length strings: their values, not object pointers
        return repr(value.tolist()).encode()
    # numbers by value, whatever type stores them (int32 or int64 antennas make the same MS)
    value = value.astype(CANONICAL_TYPES.get(value.dtype.kind, value.dtype), copy=False)
    return np.ascontiguousarray(value).tobytes() + str(value.dtype).encode()


#: The type numbers of each numpy kind are compared in (:func:`_dataset_bytes`).
CANONICAL_TYPES = {"i": np.int64, "u": np.int64, "f": np.float64, "c": np.complex128}


def geometry_items(header, *, telescope: str) -> dict[str, str]:
    """Hash (sha256, hex) of each header item a group's template depends on (module
    docstring), by item name: what tells which item differs between two files."""
    items = GEOMETRY_ITEMS + (GENERIC_GEOMETRY_ITEMS if telescope == "generic" else ())
    return {name: hashlib.sha256(_item_bytes(header, name)).hexdigest() for name in items}


def combined_digest(items: dict[str, str]) -> str:
    """One hash of a file's geometry (:func:`geometry_items`): equal for two files exactly when
    every item is."""
    return hashlib.sha256("".join(f"{k}={v};" for k, v in items.items()).encode()).hexdigest()


def file_geometry_items(path: str, *, telescope: str) -> dict[str, str]:
    with _open(path) as f:
        return geometry_items(f["Header"], telescope=telescope)


def file_geometry_digest(path: str, *, telescope: str) -> str:
    return combined_digest(file_geometry_items(path, telescope=telescope))


#: Units of geometry items for messages: name -> (unit, factor from the stored unit).
ITEM_UNITS = {
    "time_array": ("s", 86400.0),  # stored in days (JD)
    "integration_time": ("s", 1.0),
    "antenna_positions": ("m", 1.0),
    "uvw_array": ("m", 1.0),
    "latitude": ("deg", 1.0),
    "longitude": ("deg", 1.0),
    "altitude": ("m", 1.0),
    "extra_keywords/phase_center_dec": ("deg", 180.0 / np.pi),  # stored in radians
}


def describe_geometry_difference(path_a: str, path_b: str, items) -> str:
    """What differs between two files in the geometry ``items`` (names of
    :data:`GEOMETRY_ITEMS`), one clause per item, values in their units: e.g. "antenna_positions
    of antenna 17 (number 16) differ by 0.300 m". Names only the items if a file cannot be read
    (it changed or vanished since)."""
    try:
        with _open(path_a) as fa, _open(path_b) as fb:
            return "; ".join(_describe_item(n, fa["Header"], fb["Header"]) for n in items)
    except (InputFileError, OSError, KeyError, ValueError, TypeError) as exc:
        return f"{', '.join(items)} (not read again: {type(exc).__name__}: {exc})"


def _item_value(header, name: str):
    item = header.get(name)
    if item is None or not _is_data(item) or item.shape is None:
        return item if item is None else _item_bytes(header, name)
    value = np.asarray(item[()])
    return np.array(value.tolist(), dtype=object) if value.dtype.kind == "O" else value


def _describe_item(name: str, header_a, header_b) -> str:
    """One item's difference between two headers (a, b), as "<item>: <how>"."""
    a, b = _item_value(header_a, name), _item_value(header_b, name)
    if a is None or b is None:
        return f"{name} is absent from the {'first' if a is None else 'second'} file"
    if isinstance(a, bytes) or isinstance(b, bytes):  # a group, or a null dataspace
        return f"{name} differs"
    if a.shape != b.shape:
        return f"{name} has shape {a.shape} vs {b.shape}"
    numbers = a.dtype.kind in "iuf" and b.dtype.kind in "iuf"
    unit, factor = ITEM_UNITS.get(name, ("", 1.0)) if numbers else ("", 1.0)
    unit = f" {unit}" if unit else ""
    if a.size == 1:
        if numbers:
            return f"{name} is {float(a) * factor:.9g}{unit} vs {float(b) * factor:.9g}{unit}"
        return f"{name} is {_text(a.reshape(-1)[0])!r} vs {_text(b.reshape(-1)[0])!r}"
    if numbers and name == "antenna_positions" and a.ndim == 2 and np.any(a != b):
        return _describe_antennas(a, b, header_a)
    differ = np.flatnonzero(np.asarray(a != b).reshape(-1))
    if not len(differ):  # equal values, stored differently: the bytes differ, not the data
        return f"{name}: the same values, stored as {a.dtype} vs {b.dtype}"
    first = np.unravel_index(differ[0], a.shape)
    at = f"first at index {tuple(int(i) for i in first)}"
    if numbers and unit:
        worst = np.abs(a.astype(float) - b.astype(float)).max() * factor
        return f"{name}: {len(differ)} of {a.size} values differ, by up to {worst:.3g}{unit} ({at})"
    shown = (a[first], b[first]) if numbers else (repr(_text(a[first])), repr(_text(b[first])))
    return f"{name}: {len(differ)} of {a.size} values differ ({at}: {shown[0]} vs {shown[1]})"


def _describe_antennas(a: np.ndarray, b: np.ndarray, header) -> str:
    """Antennas whose positions (m) differ, the first named as the file names it."""
    moved = np.linalg.norm(a - b, axis=-1)
    which = np.flatnonzero(moved)
    i = int(which[np.argmax(moved[which])])
    label = f"antenna {i}"
    with contextlib.suppress(KeyError, IndexError, ValueError):  # then by its index
        label = (
            f"antenna {_text(header['antenna_names'][i])} "
            f"(number {int(header['antenna_numbers'][i])})"
        )
    more = f", and {len(which) - 1} other antennas" if len(which) > 1 else ""
    return f"antenna_positions of {label} differ by {moved[i]:.3f} m{more}"


def _read(ds, path: str, channels: slice = slice(None)) -> np.ndarray:
    """A whole dataset of the file at ``path``, in the file's own type, its channels (axis -2) in
    the order ``channels`` (a slice) gives them.

    Fast path: uncompressed chunked datasets of plain numbers (the correlator's) are read chunk by
    chunk, raw: ~2x faster than HDF5's own selection machinery with the correlator's small chunks
    (a few hundred kB, ~1000 per dataset). Everything else (contiguous, compressed, compound
    integer visibilities) is read by HDF5 (the general path); compression filters beyond HDF5's
    own (gzip, lzf, szip) come from ``hdf5plugin`` (bitshuffle, LZ4, Zstandard, ...).

    Storage never written is refused before (:func:`refuse_unwritten`): neither path ever reads
    a fill value. A chunk that fails its checksum or decompression raises
    :class:`CorruptDataError` naming the dataset and the chunk; a filter nobody provides,
    :class:`InputFileError` naming the filter.
    """
    chunks = ds.chunks
    plist = ds.id.get_create_plist()
    if plist.get_nfilters():
        _register_filter_plugins()
        try:
            return _in_order(ds[()], channels)
        except OSError as exc:
            raise _filter_failure(ds, path, exc) from exc
    if chunks is None or ds.dtype.names:
        return _in_order(ds[()], channels)
    return _read_chunks(ds, chunks, channels, path)


def _filter_failure(ds, path: str, exc: OSError) -> InputFileError:
    """Why a filtered dataset could not be read: a filter neither HDF5 nor hdf5plugin provides
    (named), or else a chunk whose bytes fail their checksum or decompression (the first such
    chunk, found by reading chunk by chunk: only on this error path)."""
    import h5py

    plist = ds.id.get_create_plist()
    filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
    missing = [f[0] for f in filters if not h5py.h5z.filter_avail(f[0])]
    if missing:
        return InputFileError(
            f"{path}: cannot be read as UVH5: {ds.name} is compressed with HDF5 filters "
            f"{missing}, which neither HDF5 nor hdf5plugin provides ({exc})"
        )
    names = ", ".join(_text(f[3]) or str(f[0]) for f in filters)
    chunk = _first_unreadable_chunk(ds)
    where = f"its chunk at offset {chunk[0]} ({chunk[1] + 1} of {chunk[2]})" if chunk else "a chunk"
    return CorruptDataError(
        f"{path}: {ds.name}: {where} is corrupt (its filters {names} failed: checksum or "
        "decompression error); not converted"
    )


def filter_failure_in(path: str) -> InputFileError | None:
    """Why HDF5 cannot read a file's filtered datasets (:func:`_filter_failure`), or None: for
    a reader that is not this module's (pyuvdata's, in the template job) whose HDF5 error says
    only that "a filter returned failure". Reads every filtered dataset: for error paths only."""
    failures = []

    def visit(name, obj):
        if failures or not hasattr(obj, "dtype") or not obj.id.get_create_plist().get_nfilters():
            return
        try:
            obj[()]
        except OSError as exc:
            failures.append(_filter_failure(obj, path, exc))

    _register_filter_plugins()
    with _open(path) as f:
        f.visititems(visit)
    return failures[0] if failures else None


def _first_unreadable_chunk(ds) -> tuple[tuple[int, ...], int, int] | None:
    """(offset, index, number of chunks) of the first chunk HDF5 cannot read, or None."""
    n = ds.id.get_num_chunks()
    for i in range(n):
        offset = ds.id.get_chunk_info(i).chunk_offset
        where = tuple(
            slice(o, min(o + c, s)) for o, c, s in zip(offset, ds.chunks, ds.shape, strict=True)
        )
        try:
            ds[where]
        except OSError:
            return tuple(int(o) for o in offset), i, n
    return None


def _in_order(values: np.ndarray, channels: slice) -> np.ndarray:
    if channels == slice(None):
        return values
    return np.ascontiguousarray(values[..., channels, :])


def _register_filter_plugins() -> None:
    """Make the compression filters of ``hdf5plugin`` available to HDF5 (importing it does;
    ~10 ms, so only files that are compressed pay it)."""
    import hdf5plugin  # noqa: F401


def _read_chunks(ds, chunks: tuple[int, ...], channels: slice, path: str) -> np.ndarray:
    """The raw chunks copied straight into their places, channels in ``channels`` order: one
    copy of the data (a reorder afterwards would be a second). A chunk that cannot be read, or
    whose size is not a chunk's (a damaged index), is refused, never filled in."""
    result = np.empty(ds.shape, ds.dtype)
    out = result[..., channels, :]  # a view: writing into it puts channels in order
    for offset in itertools.product(
        *(range(0, n, c) for n, c in zip(ds.shape, chunks, strict=True))
    ):
        try:
            _, raw = ds.id.read_direct_chunk(offset)
            block = np.frombuffer(raw, dtype=ds.dtype).reshape(chunks)
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            raise CorruptDataError(
                f"{path}: {ds.name}: its chunk at offset {offset} cannot be read "
                f"({type(exc).__name__}: {exc}); not converted"
            ) from exc
        where = tuple(
            slice(o, min(o + c, n)) for o, c, n in zip(offset, chunks, ds.shape, strict=True)
        )
        out[where] = block[tuple(slice(0, w.stop - w.start) for w in where)]
    return result


def _spectral(ds, path: str, shape: tuple[int, int, int], channels: slice) -> np.ndarray:
    """A (Nblts, [1,] Nfreqs, Npols) dataset as (Nblts, Nfreqs, Npols), in the file's type
    (integer-compound visibilities, the UVH5 spec's ``r``/``i`` fields, as complex128), its
    channels in ``channels`` order."""
    value = _read(ds, path, channels)
    if value.dtype.names:
        value = value["r"] + 1j * value["i"]
    if value.size != np.prod(shape):
        raise InputFileError(
            f"{path}: {ds.name} has shape {value.shape}, the header says {shape} "
            "(Nblts, Nfreqs, Npols): truncated or inconsistent file"
        )
    return value.reshape(shape)


def _index(order: np.ndarray, n: int):
    """An index array as a slice where it is one (a view instead of a copy)."""
    if len(order) == n and np.array_equal(order, np.arange(n)):
        return slice(None)
    if len(order) == n and np.array_equal(order, np.arange(n)[::-1]):
        return slice(None, None, -1)
    return order


def _select(values: np.ndarray, take: tuple) -> np.ndarray:
    """values[rows][:, chans][:, :, pols] as a C-contiguous array of the MS's type (``values``
    itself if that is what it is)."""
    rows, chans, pols = take
    dtype = _MS_TYPES.get(values.dtype.kind, values.dtype)
    whole = all(isinstance(t, slice) and t == slice(None) for t in take)
    if whole and values.dtype == dtype and values.flags.c_contiguous:
        return values
    if not isinstance(rows, slice):
        values = values[rows]
    if not isinstance(pols, slice):
        values = values[:, :, pols]
    # order="C": the default ("K") keeps the strides a fancy index on the last axis leaves
    return np.array(values[:, chans], dtype=dtype, order="C")


#: In-memory types of the MS columns: complex64 DATA, float32 WEIGHT_SPECTRUM, bool FLAG.
#: numpy kind -> the MS's in-memory type (:data:`dsa110ms.ms.layout.VALUE_DTYPES`).
_MS_TYPES = {np.dtype(d).kind: d for d in VALUE_DTYPES.values()}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def unprojected_rows(header) -> np.ndarray:
    """Which baseline-times of a file are unprojected (drift scans), as pyuvdata reads the header:
    per phase centre of ``phase_center_catalog``, or, in files older than the catalog, from the
    one ``phase_type`` ("phased" is sidereal, anything else unprojected)."""
    n_blts = int(header["Nblts"][()])
    catalog = header.get("phase_center_catalog")
    if catalog is None:
        phase_type = _text(header["phase_type"][()]) if "phase_type" in header else "drift"
        return np.full(n_blts, phase_type != "phased")
    unprojected_ids = [
        int(key) for key, entry in catalog.items() if _text(entry["cat_type"][()]) == "unprojected"
    ]
    return np.isin(header["phase_center_id_array"][()], unprojected_ids)


def file_is_unprojected(path: str) -> bool:
    """Whether any baseline-time of a file is unprojected (:func:`unprojected_rows`)."""
    with _open(path) as f:
        try:
            return bool(unprojected_rows(f["Header"]).any())
        except KeyError as exc:
            raise InputFileError(f"{path}: not a UVH5 file as expected (missing {exc})") from exc


#: Polarizations whose autocorrelations are real (pyuvdata's list: xx yy rr ll pI pQ pU pV).
REAL_AUTO_POLS = (-5, -6, -1, -2, 1, 2, 3, 4)


def fix_autos(data: np.ndarray, ant_1: np.ndarray, ant_2: np.ndarray, pols) -> np.ndarray:
    """Autocorrelations made real as pyuvdata's reader makes them (``fix_autos=True``, its
    default): if any autocorrelation of a real-auto polarization has an imaginary part, every
    such value becomes its absolute value, computed in complex128 as pyuvdata computes it.
    ``data`` is in the file's row and polarization order; changed in place."""
    autos = np.flatnonzero(np.asarray(ant_1) == np.asarray(ant_2))
    pol_index = np.flatnonzero(np.isin(np.asarray(pols), REAL_AUTO_POLS))
    if not (len(autos) and len(pol_index)):
        return data
    block = data[autos][:, :, pol_index]
    if np.any(block.imag != 0):
        data[np.ix_(autos, np.arange(data.shape[1]), pol_index)] = np.abs(
            block.astype(np.complex128)
        )
    return data


#: Speed of light, m/s (exact; astropy's ``const.c``, which pyuvdata uses).
SPEED_OF_LIGHT_M_S = 299_792_458.0


@dataclass(frozen=True)
class WRotation:
    """A phase rotation of some baseline-times to a new phase centre: ``rows`` (bool, per file
    baseline-time) and ``delta_w`` (metres, new minus old w, pyuvdata's sign convention)."""

    rows: np.ndarray
    delta_w: np.ndarray

    def rotate(self, data: np.ndarray, *, freqs: np.ndarray, **_) -> np.ndarray:
        """pyuvdata's ``UVData._apply_w_proj``, operation for operation so that the values are
        the same to the bit: data (as complex128, the type pyuvdata reads them in) times
        exp(-2 pi i delta_w f / c) on the rotated rows; ``freqs`` in ``data``'s channel order."""
        rows = self.rows
        if not rows.any():
            return data
        data = data.astype(np.complex128)
        delta_w_lambda = (
            self.delta_w[rows].reshape(-1, 1) * (1.0 / SPEED_OF_LIGHT_M_S) * freqs.reshape(1, -1)
        )
        data[rows] *= np.exp((-1j * 2 * np.pi) * delta_w_lambda[:, :, None])
        return data


def read_subband_arrays(
    path: str,
    *,
    telescope: str,
    keep_autocorrelations: bool,
    rotation=None,
) -> SubbandArrays:
    """Read one UVH5 subband's arrays in MS order (module docstring); errors name the file.

    ``rotation``: rephase the visibilities first, with its ``rotate`` method
    (:class:`WRotation`, pyuvdata's to the bit; :class:`dsa110ms.phasecenter.PhasePlan`).
    """
    with _open(path) as f:
        refuse_unwritten(f, path)
        try:
            header = f["Header"]
            if int(header["Nspws"][()]) != 1:
                raise InputFileError(
                    f"{path}: {int(header['Nspws'][()])} SPWs; one per file expected"
                )
            shape = tuple(int(header[n][()]) for n in ("Nblts", "Nfreqs", "Npols"))
            freqs = np.asarray(header["freq_array"][()], dtype=float).reshape(-1)
            widths = np.broadcast_to(
                np.asarray(header["channel_width"][()], dtype=float), freqs.shape
            )
            ant_1, ant_2 = header["ant_1_array"][()], header["ant_2_array"][()]
            order = ms_row_order(ant_1, ant_2, keep_autocorrelations=keep_autocorrelations)
            file_pols = header["polarization_array"][()]
            pols = casa_pol_order(file_pols)
            times = header["time_array"][()]
            n_times = len(np.unique(times))
            geometry = geometry_items(header, telescope=telescope)
            digest = combined_digest(geometry)
            if len(freqs) != shape[1]:
                raise InputFileError(f"{path}: {len(freqs)} frequencies for Nfreqs = {shape[1]}")
            chans = _index(np.argsort(freqs, kind="stable"), shape[1])
            # ascending channels while reading where that is a slice (the correlator's reversed
            # order): no reordering copy afterwards
            read_order = chans if isinstance(chans, slice) else slice(None)
            data = _spectral(f["Data/visdata"], path, shape, read_order)
            flag = _spectral(f["Data/flags"], path, shape, read_order)
            nsamples = _spectral(f["Data/nsamples"], path, shape, read_order)
        except KeyError as exc:
            raise InputFileError(f"{path}: not a UVH5 file as expected (missing {exc})") from exc
        except OSError as exc:
            # a header item's chunk that fails its filters: named like the data's
            failure = filter_failure_in(path) or InputFileError(
                f"{path}: cannot be read as UVH5 (HDF5 error: {exc})"
            )
            raise failure from exc
        except ValueError as exc:
            raise InputFileError(f"{path}: cannot be read as UVH5 ({exc})") from exc
    data = fix_autos(data, ant_1, ant_2, file_pols)
    if rotation is not None:
        data = rotation.rotate(
            data,
            time_array=times,
            ant_1=ant_1,
            ant_2=ant_2,
            freqs=freqs[read_order],
            geometry_digest=digest,
            path=path,
        )
    take = (
        _index(order.rows, shape[0]),
        slice(None) if isinstance(chans, slice) else chans,
        _index(pols, shape[2]),
    )
    data = _select(data, take)
    flag = _select(flag, take).astype(bool, copy=False)
    weight_spectrum = _select(nsamples, take).astype(np.float32, copy=False)
    if order.keep_value.any():  # conjugated rows take their cross polarizations' conjugates
        conjugate_pols = conjugate_pol_order(file_pols[pols])
        if conjugate_pols is None:
            raise InputFileError(
                f"{path}: polarizations {[int(p) for p in file_pols]} lack the conjugate of a "
                "cross polarization, and baselines mix conjugations (ant_1 < ant_2 and "
                "ant_1 > ant_2): the conjugated rows cannot be written (pyuvdata's write_ms "
                "cannot either)"
            )
        if not np.array_equal(conjugate_pols, np.arange(len(conjugate_pols))):
            swapped = np.flatnonzero(order.keep_value)
            for values in (data, flag, weight_spectrum):
                values[swapped] = values[swapped][:, :, conjugate_pols]
    # flip_conj: DATA is written conjugated, so only rows pyuvdata conjugated keep the file's
    # value; negating the imaginary parts in place is the cheapest way on 100 MB
    imag = data.view(np.float32)[..., 1::2]
    imag *= np.where(order.keep_value, np.float32(1), np.float32(-1))[:, None, None]
    return SubbandArrays(
        data=data,
        flag=flag,
        weight_spectrum=weight_spectrum,
        chan_freq=np.array(freqs[chans]),
        # ascending channels have positive widths (descending files may store them negative)
        chan_width=np.abs(widths[chans]),
        ant_1=order.ant_1,
        ant_2=order.ant_2,
        n_times=n_times,
        geometry_digest=digest,
        geometry_items=geometry,
    )
