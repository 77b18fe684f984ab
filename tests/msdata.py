"""Test helpers: read MS main-table columns with casatools and UVH5 files with plain h5py.

The UVH5 side deliberately avoids pyuvdata (the code under test uses it), so a comparison checks
the converter against the raw file contents.
"""

from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np

from dsa110ms import casa

MJD_OFFSET_JD = 2400000.5


@dataclass
class MsColumns:
    data: np.ndarray  # (nrow, nchan, npol)
    flag: np.ndarray
    weight_spectrum: np.ndarray | None
    ant1: np.ndarray
    ant2: np.ndarray
    time: np.ndarray  # MJD seconds
    spw: np.ndarray  # SPW id of each row
    spw_freqs: list[np.ndarray]
    uvw: np.ndarray  # (nrow, 3)


def read_ms(path) -> MsColumns:
    with casa.table(path) as tb:
        cols = {c: tb.getcol(c) for c in ("DATA", "FLAG", "ANTENNA1", "ANTENNA2", "TIME", "UVW")}
        cols["DATA_DESC_ID"] = tb.getcol("DATA_DESC_ID")
        wsp = tb.getcol("WEIGHT_SPECTRUM") if "WEIGHT_SPECTRUM" in tb.colnames() else None
    with casa.table(f"{path}/DATA_DESCRIPTION") as tb:
        spw_of_dd = tb.getcol("SPECTRAL_WINDOW_ID")
    with casa.table(f"{path}/SPECTRAL_WINDOW") as tb:
        freqs = [np.asarray(tb.getcell("CHAN_FREQ", i)) for i in range(tb.nrows())]
    return MsColumns(
        data=cols["DATA"].transpose(2, 1, 0),
        flag=cols["FLAG"].transpose(2, 1, 0),
        weight_spectrum=None if wsp is None else wsp.transpose(2, 1, 0),
        ant1=cols["ANTENNA1"],
        ant2=cols["ANTENNA2"],
        time=cols["TIME"],
        spw=spw_of_dd[cols["DATA_DESC_ID"]],
        spw_freqs=freqs,
        uvw=cols["UVW"].T,
    )


@dataclass
class Uvh5Raw:
    vis: np.ndarray  # (nblts, nfreq, npol), file channel order (descending)
    flags: np.ndarray
    nsamples: np.ndarray
    ant1: np.ndarray
    ant2: np.ndarray
    time_mjd_s: np.ndarray
    freqs: np.ndarray


def read_uvh5_raw(path) -> Uvh5Raw:
    with h5py.File(path, "r") as f:
        return Uvh5Raw(
            vis=f["Data/visdata"][:, 0],
            flags=f["Data/flags"][:, 0],
            nsamples=f["Data/nsamples"][:, 0],
            ant1=f["Header/ant_1_array"][:],
            ant2=f["Header/ant_2_array"][:],
            time_mjd_s=(f["Header/time_array"][:] - MJD_OFFSET_JD) * 86400.0,
            freqs=f["Header/freq_array"][0],
        )


def expected_ms_data(ms: MsColumns, rows: np.ndarray, raw: Uvh5Raw):
    """The documented convention, applied to the raw file for MS ``rows`` of one SPW.

    MS row (ANTENNA1=p, ANTENNA2=q), p < q, holds conj(V) where V is the file's visibility
    stored as (ant_1=p, ant_2=q); if the file stores that baseline as (q, p), the MS holds V
    itself. Channels are reversed (the file descends, the MS ascends).
    Returns (data, flags, nsamples) shaped like ``ms.data[rows]``.
    """
    index = {
        (a, b, round(t, 3)): i
        for i, (a, b, t) in enumerate(zip(raw.ant1, raw.ant2, raw.time_mjd_s, strict=True))
    }
    data = np.empty((len(rows),) + raw.vis.shape[1:], dtype=raw.vis.dtype)
    flags = np.empty((len(rows),) + raw.vis.shape[1:], dtype=bool)
    nsamples = np.empty((len(rows),) + raw.vis.shape[1:], dtype=raw.nsamples.dtype)
    for k, r in enumerate(rows):
        p, q, t = int(ms.ant1[r]), int(ms.ant2[r]), round(float(ms.time[r]), 3)
        if (p, q, t) in index:
            i = index[(p, q, t)]
            v = np.conj(raw.vis[i])
        else:
            i = index[(q, p, t)]
            v = raw.vis[i]
        data[k] = v[::-1]
        flags[k] = raw.flags[i][::-1]
        nsamples[k] = raw.nsamples[i][::-1]
    return data, flags, nsamples


#: Subtables compared by :func:`assert_same_ms` (HISTORY differs by design: concat adds to it).
COMPARED_SUBTABLES = ("ANTENNA", "DATA_DESCRIPTION", "FEED", "FIELD", "OBSERVATION",
                      "POLARIZATION", "SOURCE", "SPECTRAL_WINDOW", "STATE")  # fmt: skip


def assert_same_ms(got, want) -> None:
    """Two MSs hold the same values: every column of the main table and of every subtable but
    HISTORY, cell by cell (storage managers and column shapes may differ)."""
    for sub in ("", *COMPARED_SUBTABLES):
        with casa.table(f"{got}/{sub}") as a, casa.table(f"{want}/{sub}") as b:
            assert sorted(a.colnames()) == sorted(b.colnames()), sub
            assert a.nrows() == b.nrows(), sub
            for c in a.colnames():
                if not (b.nrows() and b.iscelldefined(c, 0)) or b.coldatatype(c) == "record":
                    continue
                np.testing.assert_array_equal(a.getcol(c), b.getcol(c), err_msg=f"{sub} {c}")
