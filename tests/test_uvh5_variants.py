"""The part reader on every encoding of a UVH5 file the spec allows: each variant of a real file
gives the part arrays pyuvdata's own reading and ``write_ms`` give (DATA, FLAG,
WEIGHT_SPECTRUM, cell by cell), through the raw-chunk fast path or HDF5's general one."""

from __future__ import annotations

from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

from dsa110ms import casa
from dsa110ms.ms.part import open_part, write_part
from dsa110ms.ms.template import write_pyuvdata_ms

from .realdata import REALDATA, SPECTRAL_DATASETS

pytestmark = pytest.mark.filterwarnings("ignore")

#: HERA, 4 antennas, 20 times, 4 channels, 2 pols (nn, ee), complex128, old layout, chunked;
#: autocorrelations with imaginary parts (made real by pyuvdata's reader), drift scan.
SOURCE = REALDATA / "zen.2458661.23480.HH.uvh5"
OPTIONS = {"telescope": "generic", "generic_phasing": "first_zenith"}

INT_TYPES = {f"int{bits}": np.dtype(f"int{bits}") for bits in (8, 16, 32)}
#: One change at a time from SOURCE: name -> (visdata type, layout, storage, nsamples type, pols)
VARIANTS = {
    "as_is": ("complex128", "old", "chunked", "float32", None),
    "complex64": ("complex64", "old", "chunked", "float32", None),
    "int8": ("int8", "old", "chunked", "float32", None),
    "int16": ("int16", "new", "chunked", "float32", None),
    "int32": ("int32", "old", "gzip", "float32", None),
    "current_layout": ("complex64", "new", "chunked", "float32", None),
    "contiguous": ("complex64", "new", "contiguous", "float32", None),
    "gzip": ("complex64", "old", "gzip", "float32", None),
    "lzf": ("complex128", "new", "lzf", "float32", None),
    "bitshuffle": ("complex64", "new", "bitshuffle", "float32", None),
    "nsamples_float64": ("complex64", "old", "chunked", "float64", None),
    "one_pol_xx": ("complex64", "old", "chunked", "float32", (-5,)),
    "four_linear": ("complex64", "old", "chunked", "float32", (-5, -6, -7, -8)),
    "four_circular": ("complex64", "new", "gzip", "float32", (-1, -2, -3, -4)),
}


def write_variant(path: Path, vis_type, layout, storage, nsamples_type, pols) -> Path:
    """SOURCE re-encoded; with ``pols``, its data for that many polarizations relabelled."""
    with h5py.File(SOURCE) as f, h5py.File(path, "w") as g:
        f.copy("Header", g)
        arrays = {name: f["Data"][name][()] for name in SPECTRAL_DATASETS}
        if pols is not None:
            n = len(pols)
            arrays = {k: np.concatenate([v, v], axis=-1)[..., :n] for k, v in arrays.items()}
            for key, value in (("polarization_array", np.array(pols)), ("Npols", n)):
                del g["Header"][key]
                g["Header"][key] = value
        vis = arrays["visdata"]
        if vis_type in INT_TYPES:
            scale = 0.9 * np.iinfo(INT_TYPES[vis_type]).max / np.abs(vis).max()
            compound = np.dtype([("r", INT_TYPES[vis_type]), ("i", INT_TYPES[vis_type])])
            values = np.empty(vis.shape, compound)
            values["r"], values["i"] = np.round(vis.real * scale), np.round(vis.imag * scale)
            arrays["visdata"] = values
        else:
            arrays["visdata"] = vis.astype(vis_type)
        arrays["nsamples"] = arrays["nsamples"].astype(nsamples_type)
        data = g.create_group("Data")
        for name, values in arrays.items():
            if layout == "new":
                values = values[:, 0]
            kwargs = {
                "chunked": {"chunks": (100,) + values.shape[1:]},
                "contiguous": {},
                "gzip": {"chunks": True, "compression": "gzip", "shuffle": True},
                "lzf": {"chunks": True, "compression": "lzf"},
                "bitshuffle": {"chunks": True, **hdf5plugin.Bitshuffle()},
            }[storage]
            data.create_dataset(name, data=values, **kwargs)
    return path


@pytest.mark.parametrize("variant", VARIANTS)
def test_part_of_every_encoding_equals_pyuvdata(variant, tmp_path):
    path = write_variant(tmp_path / f"{variant}.uvh5", *VARIANTS[variant])
    part = open_part(write_part(path, tmp_path / "p" / "part", **OPTIONS))
    reference = write_pyuvdata_ms(path, tmp_path / "reference.ms", **OPTIONS)
    with casa.table(str(reference)) as tb:
        for column in ("DATA", "FLAG", "WEIGHT_SPECTRUM"):
            want = np.transpose(tb.getcol(column))  # casatools: (npol, nchan, nrow)
            np.testing.assert_array_equal(part.array(column), want, err_msg=column)
    pols = VARIANTS[variant][4]
    assert part.array("DATA").shape[-1] == (len(pols) if pols else 2)


def test_a_filter_nobody_provides_is_one_line_naming_the_file_and_the_filter(tmp_path):
    from dsa110ms.errors import InputFileError

    path = write_variant(tmp_path / "f.uvh5", "complex64", "new", "chunked", "float32", None)
    with h5py.File(path, "r+") as f:  # chunks said to be compressed by a filter nobody has
        values = f["Data/visdata"][()]
        del f["Data/visdata"]
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk(values.shape)
        dcpl.set_filter(32999, h5py.h5z.FLAG_OPTIONAL)
        space = h5py.h5s.create_simple(values.shape)
        ds = h5py.h5d.create(f.id, b"Data/visdata", h5py.h5t.py_create(values.dtype), space, dcpl)
        ds.write_direct_chunk((0, 0, 0), values.tobytes(), filter_mask=0)
    with pytest.raises(InputFileError, match=r"filters \[32999\]") as error:
        write_part(path, tmp_path / "p" / "part", **OPTIONS)
    assert str(error.value).startswith(f"{path}: cannot be read as UVH5")
    assert "\n" not in str(error.value)


def test_a_lone_cross_polarization_with_mixed_conjugations_is_refused_as_by_pyuvdata(tmp_path):
    """xy alone cannot be conjugated (its conjugate is yx): neither reader can write it."""
    from dsa110ms.errors import InputFileError

    path = write_variant(tmp_path / "xy.uvh5", "complex64", "old", "chunked", "float32", (-7,))
    with pytest.raises(InputFileError, match="lack the conjugate of a cross polarization"):
        write_part(path, tmp_path / "p" / "part", **OPTIONS)
    with pytest.raises(InputFileError, match="pyuvdata cannot write it.*Not all conjugate pols"):
        write_pyuvdata_ms(path, tmp_path / "reference.ms", **OPTIONS)


def test_descending_channels_with_negative_widths_become_ascending_with_positive_ones(tmp_path):
    path = write_variant(tmp_path / "f.uvh5", "complex64", "new", "chunked", "float32", None)
    with h5py.File(path, "r+") as f:
        header = f["Header"]
        freqs = header["freq_array"][()]
        widths = np.broadcast_to(header["channel_width"][()], freqs.shape[-1:])
        for name, values in (("freq_array", freqs[..., ::-1]), ("channel_width", -widths)):
            del header[name]
            header[name] = values
        for name in SPECTRAL_DATASETS:
            values = f["Data"][name][()][:, ::-1]
            del f["Data"][name]
            f["Data"].create_dataset(name, data=values)
    part = open_part(write_part(path, tmp_path / "p" / "part", **OPTIONS))
    assert np.all(np.diff(part.chan_freq) > 0)
    np.testing.assert_array_equal(part.array("CHAN_WIDTH"), np.abs(widths))


def test_generic_mode_warns_when_casa_does_not_know_where_the_telescope_is(caplog):
    from dsa110ms.uvh5 import read_subband, warn_if_casa_misplaces

    for name, warns in (("zen.2456865.60537.xy.uvcRREAA.uvh5", True), (SOURCE.name, False)):
        caplog.clear()
        path = str(REALDATA / name)
        warn_if_casa_misplaces(read_subband(path, read_data=False), path)
        assert ("CASA does not know the telescope name 'PAPER'" in caplog.text) is warns, name
