"""Quick-look statistics of the visibilities, for the run report.

Each part job computes its subband's statistics while the data are in memory
(:func:`subband_quicklook`, kept in the part's ``part.json``); the concat job gathers the
group's (:func:`group_quicklook`) into the group's record. Nothing here re-reads an MS.

Conventions: amplitudes are means of ``|V|`` over unflagged cross-correlations and both
polarizations, in the correlator's (uncalibrated) units; frequencies in Hz; times are the
integration centres as MJD seconds (the MS's TIME).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _means(total: np.ndarray, count: np.ndarray) -> list[float | None]:
    """total / count per element, None where nothing counted."""
    return [round(float(t / c), 6) if c else None for t, c in zip(total, count, strict=True)]


def subband_quicklook(
    data: np.ndarray, flag: np.ndarray, ant_1: np.ndarray, ant_2: np.ndarray, n_times: int
) -> dict:
    """Statistics of one subband's rows (time-major, ``n_times`` integrations).

    ``data``/``flag``: (rows, channels, polarizations), channels in the part's order.
    Returns ``amp_per_channel`` (one per channel, None where all flagged), ``amp_per_time``
    (one per integration; a single value if the rows are not the same baselines in every
    integration) and ``flagged_fraction`` (of all visibilities, autos included).
    ~0.03 s for a full-size subband: it runs in every part job.
    """
    rows, nchan, npol = data.shape
    if rows % n_times:  # not the same baselines in every integration (possible in generic mode)
        n_times = 1  # then only the per-channel means, over all rows
    auto = ant_1 == ant_2
    amplitude = np.abs(data)
    amplitude[auto] = 0.0
    flagged = bool(flag.any())
    if flagged:
        amplitude[flag] = 0.0
    # sums per (integration, channel x polarization): reductions over contiguous rows
    total = amplitude.reshape(n_times, rows // n_times, nchan * npol).sum(axis=1)
    total = total.reshape(n_times, nchan, npol).sum(axis=2, dtype=np.float64)
    if flagged:
        used = ~flag
        used[auto] = False
        count = used.reshape(n_times, rows // n_times, nchan * npol).sum(axis=1)
        count = count.reshape(n_times, nchan, npol).sum(axis=2)
    else:  # the usual case: every cross-correlation counts
        cross_per_time = (~auto).reshape(n_times, -1).sum(axis=1) * npol
        count = np.repeat(cross_per_time[:, None], nchan, axis=1)
    return {
        "amp_per_channel": _means(total.sum(axis=0), count.sum(axis=0)),
        "amp_per_time": _means(total.sum(axis=1), count.sum(axis=1)),
        "flagged_fraction": round(float(flag.mean()), 6) if flagged else 0.0,
    }


def group_quicklook(
    subbands: Mapping[int, Mapping], chan_freqs: Mapping[int, Sequence[float]], times
) -> dict:
    """The group's statistics from its subbands' (``{subband: subband_quicklook(...)}``),
    ordered by frequency; ``times``: the integration centres (MJD s)."""
    order = sorted(subbands, key=lambda sb: float(np.min(chan_freqs[sb])))
    freq, amp = [], []
    for sb in order:
        pairs = sorted(zip(chan_freqs[sb], subbands[sb]["amp_per_channel"], strict=True))
        freq += [float(f) for f, _ in pairs]
        amp += [a for _, a in pairs]
    per_time = np.array(
        [
            [np.nan if a is None else a for a in subbands[sb]["amp_per_time"]]
            for sb in order
            if len(subbands[sb]["amp_per_time"]) == len(times)  # see subband_quicklook
        ]
    ).reshape(-1, len(times))
    time_mean = np.full(len(times), np.nan)
    for t in range(len(times)):  # mean over the subbands with a value for that integration
        values = per_time[:, t][np.isfinite(per_time[:, t])]
        if len(values):
            time_mean[t] = values.mean()
    return {
        "chan_freq_hz": freq,
        "amp_per_channel": amp,
        "time_mjd_s": [float(t) for t in times],
        "amp_per_time": [None if not np.isfinite(a) else round(float(a), 6) for a in time_mean],
        "flagged_fraction": {f"sb{sb:02d}": subbands[sb]["flagged_fraction"] for sb in order},
    }
