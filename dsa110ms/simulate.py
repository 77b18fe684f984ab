"""Simulator of DSA-110 subband files, written in the telescope's own on-disk layout.

The layout follows the correlator's file writer (dsa110-meridian-fs ``dsamfs/io.py``): an HDF5 file
with ``Header/``, ``Header/extra_keywords/`` and ``Data/`` groups, float32 meridian UVW repeated for
every integration, descending channels, autocorrelations included, baselines in the correlator's
antenna order (so both ant_1 > ant_2 and ant_1 < ant_2 occur), ``phase_type`` "drift" although the
data are fringe-stopped to (HA = 0, Dec = pointing dec), and file names stamped with the wall clock
of the node that opened them (a few seconds of jitter between subbands).

Sky model: one point source of ``source_flux_jy`` at an hour-angle/declination offset from the
phase centre at the middle of the group, plus small seeded Gaussian noise. Visibilities use the
pyuvdata convention, which the DSA-110 writer follows ("uvw = B - A, vis = A* B"):
b = x(ant_2) - x(ant_1) and V = S exp(+2 pi i b.(s - s0) / lambda), where s and s0 are unit vectors
to the source and to the phase centre in the apparent frame of date (pyuvdata's ``phase`` removes
exp(+2 pi i w / lambda); dsamfs divides by exp(+2 pi i w / lambda) when it fringe-stops).
Precession, nutation and aberration are ignored by the model: they move the source by the same
amount for every baseline and do not change what the converter must preserve.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import h5py
import numpy as np

from dsa110ms import telescope as tel
from dsa110ms.groups import (
    INCOMPLETE_SUFFIX,
    format_timestamp,
    jd_from_datetime,
    parse_timestamp,
    subband_file_name,
)

log = logging.getLogger(__name__)

SPEED_OF_LIGHT_M_S = 299792458.0


@dataclass(frozen=True)
class SimulationSpec:
    """What to simulate. Angles in degrees, times in seconds, flux in Jy."""

    n_antennas: int = 8
    n_integrations: int = 3
    subbands: tuple[int, ...] = tuple(range(tel.N_SUBBANDS))
    n_groups: int = 1
    n_channels: int = tel.CHANNELS_PER_SUBBAND
    pointing_dec_deg: float = 55.0
    source_ha_offset_deg: float = 0.5
    source_dec_offset_deg: float = 0.3
    source_flux_jy: float = 5.0
    noise_jy: float = 0.01
    start: str = "2026-01-15T03:00:00"
    max_jitter_s: int = 3
    seed: int = 20260115


#: The size of a real group: 96 of 117 antennas, 24 integrations (16 x 48 channels by default).
FULL_SIZE = {"n_antennas": 96, "n_integrations": 24}


def correlator_antenna_order(n_antennas: int, seed: int) -> np.ndarray:
    """Antenna numbers (0-based pad index) in the order the correlator lists them.

    Antennas are spread over the array; their order is a fixed shuffle, like the real correlator's
    SNAP-board order, so that baselines come with both ant_1 > ant_2 and ant_1 < ant_2.
    """
    if not 2 <= n_antennas <= tel.N_PADS:
        raise ValueError(f"n_antennas must be in 2..{tel.N_PADS}, got {n_antennas}")
    pads = np.unique(np.linspace(0, tel.N_PADS - 1, n_antennas).round().astype(int))
    return np.random.default_rng(seed).permutation(pads)


def correlator_baselines(order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ant_1, ant_2) of every baseline, lower triangle of the correlator order, autos included."""
    i, j = np.tril_indices(len(order))
    return order[i], order[j]


def equatorial_baselines(ant_1: np.ndarray, ant_2: np.ndarray) -> np.ndarray:
    """Baselines x(ant_2) - x(ant_1), m, local equatorial frame (X: HA=0, Y: east, Z: pole)."""
    ecef = tel.pad_positions_ecef_offsets()
    lon = np.radians(tel.LONGITUDE_DEG)
    rot = np.array([[np.cos(lon), np.sin(lon), 0], [-np.sin(lon), np.cos(lon), 0], [0, 0, 1]])
    local = ecef @ rot.T
    return local[ant_2] - local[ant_1]


def direction(ha: np.ndarray, dec: float | np.ndarray) -> np.ndarray:
    """Unit vectors in the local equatorial frame for hour angle(s) and declination(s), radians."""
    ha, dec = np.broadcast_arrays(ha, dec)
    return np.stack([np.cos(dec) * np.cos(ha), -np.cos(dec) * np.sin(ha), np.sin(dec)], axis=-1)


def meridian_uvw(baselines: np.ndarray, dec: float) -> np.ndarray:
    """UVW (m) of equatorial baselines toward (HA = 0, dec): what the writer stores, float32."""
    x, y, z = baselines.T
    u = y
    v = -np.sin(dec) * x + np.cos(dec) * z
    w = np.cos(dec) * x + np.sin(dec) * z
    return np.stack([u, v, w], axis=-1).astype(np.float32)


def group_start_times(spec: SimulationSpec) -> list[dt.datetime]:
    """Nominal start of each group, at the telescope's cadence (one file of 24 dumps, 309.2 s)
    whatever n_integrations is, so that small groups are as far apart as real ones."""
    t0 = parse_timestamp(spec.start)  # the config's one reading of a time (a leap second too)
    step = dt.timedelta(seconds=tel.INTEGRATIONS_PER_FILE * tel.INTEGRATION_TIME_S)
    return [t0 + g * step for g in range(spec.n_groups)]


def simulate_visibilities(
    spec: SimulationSpec, baselines: np.ndarray, is_auto: np.ndarray, freqs_hz: np.ndarray, rng
) -> np.ndarray:
    """Model visibilities, shape (Ntimes * Nbls, 1, Nfreqs, 2), complex64, time-major."""
    dec0 = np.radians(spec.pointing_dec_deg)
    dec_s = dec0 + np.radians(spec.source_dec_offset_deg)
    dt_s = (np.arange(spec.n_integrations) - (spec.n_integrations - 1) / 2) * tel.INTEGRATION_TIME_S
    ha_s = np.radians(spec.source_ha_offset_deg) + tel.EARTH_ROTATION_RAD_PER_S * dt_s
    delta = direction(ha_s, dec_s) - direction(0.0, dec0)  # (Ntimes, 3)
    delay_m = np.einsum("tk,bk->tb", delta, baselines).reshape(-1)  # (Nblts,)
    phase = 2j * np.pi * delay_m[:, None] * (freqs_hz[None, :] / SPEED_OF_LIGHT_M_S)
    vis = spec.source_flux_jy * np.exp(phase)
    nblts, nfreqs = vis.shape
    noise = rng.normal(0, spec.noise_jy, (nblts, nfreqs, 2, 2)).astype(np.float32)
    out = np.empty((nblts, 1, nfreqs, 2), dtype=np.complex64)
    out[:, 0, :, :] = vis[:, :, None] + noise[..., 0] + 1j * noise[..., 1]
    autos = np.tile(is_auto, spec.n_integrations)
    # Autocorrelations are real and positive: source plus a system temperature term.
    out[autos] = (spec.source_flux_jy + 100.0 + np.abs(noise[autos, :, :, 0]))[:, None]
    return out


def write_subband_file(
    path: Path,
    spec: SimulationSpec,
    subband: int,
    start: dt.datetime,
    order: np.ndarray,
    rename: bool = True,
) -> Path:
    """Write one subband file as the correlator does: ``<name>_incomplete.hdf5``, then rename
    it to ``path`` (``rename=False``: leave that to the caller). Returns the file written."""
    ant_1, ant_2 = correlator_baselines(order)
    nbls = len(ant_1)
    nt = spec.n_integrations
    nblts = nbls * nt
    freqs = tel.subband_frequencies(subband, spec.n_channels)
    baselines = equatorial_baselines(ant_1, ant_2)
    dec0 = np.radians(spec.pointing_dec_deg)
    start_jd = jd_from_datetime(start)  # the data start at ``start``; the name may differ
    times = start_jd + (np.arange(nt) + 0.5) * tel.INTEGRATION_TIME_S / 86400.0
    rng = np.random.default_rng([spec.seed, subband, int(start.timestamp())])
    vis = simulate_visibilities(spec, baselines, ant_1 == ant_2, freqs, rng)

    tmp = path.with_name(path.stem + INCOMPLETE_SUFFIX)
    with h5py.File(tmp, "w") as f:
        header = f.create_group("Header")
        data = f.create_group("Data")
        header["latitude"] = tel.LATITUDE_DEG
        header["longitude"] = tel.LONGITUDE_DEG
        header["altitude"] = tel.ALTITUDE_M
        header["telescope_name"] = np.bytes_(tel.TELESCOPE_NAME)
        header["instrument"] = np.bytes_(tel.INSTRUMENT)
        header["object_name"] = np.bytes_(tel.OBJECT_NAME)
        header["history"] = np.bytes_(f"written by dsa110ms simulator on {format_timestamp(start)}")
        header["phase_type"] = np.bytes_("drift")
        header["Nants_data"] = len(order)
        header["Nants_telescope"] = tel.N_PADS
        header["antenna_diameters"] = np.full(tel.N_PADS, tel.DISH_DIAMETER_M)
        header.create_dataset("ant_1_array", data=np.tile(ant_1, nt).astype(np.int64), chunks=True)
        header.create_dataset("ant_2_array", data=np.tile(ant_2, nt).astype(np.int64), chunks=True)
        names = np.array([f"{n + 1}" for n in range(tel.N_PADS)], dtype="S4")
        header.create_dataset("antenna_names", data=names, dtype="S4")
        header["antenna_numbers"] = np.arange(tel.N_PADS)
        header["Nbls"] = nbls
        header["Nblts"] = nblts
        header["Nfreqs"] = spec.n_channels
        header["Npols"] = 2
        header["Ntimes"] = nt
        header["Nspws"] = 1
        uvw = np.tile(meridian_uvw(baselines, dec0), (nt, 1))
        header.create_dataset("uvw_array", data=uvw, dtype=np.float32, chunks=True)
        header.create_dataset("time_array", data=np.repeat(times, nbls), chunks=True)
        header.create_dataset(
            "integration_time", data=np.full(nblts, tel.INTEGRATION_TIME_S), chunks=True
        )
        header["freq_array"] = freqs[np.newaxis, :]
        header["channel_width"] = tel.CHANNEL_WIDTH_HZ
        header["spw_array"] = np.array([1])
        header["polarization_array"] = np.array([-5, -6])
        header["antenna_positions"] = tel.pad_positions_ecef_offsets()
        extra = header.create_group("extra_keywords")
        extra["phase_center_dec"] = dec0
        extra["ha_phase_center"] = 0.0
        extra["phase_center_epoch"] = "HADEC"
        extra["fs_table"] = np.bytes_(f"/home/ubuntu/fs_tables/fringestopping_table_{subband}.npz")
        extra["applied_delays_ns"] = np.bytes_(" ".join(["0"] * (2 * tel.N_PADS)))
        data.create_dataset("visdata", data=vis, chunks=True)
        data.create_dataset("flags", data=np.zeros(vis.shape, dtype=bool), chunks=True)
        data.create_dataset("nsamples", data=np.ones(vis.shape, dtype=np.float32), chunks=True)
    if not rename:
        return tmp
    os.replace(tmp, path)
    return path


def simulate(spec: SimulationSpec, output_dir: Path | str) -> list[Path]:
    """Write every file of every group; returns the paths written, sorted. Each group's data
    start at its nominal start (:func:`group_start_times`), which is therefore its id; its files
    are named 0..``max_jitter_s`` s later, as the nodes' clocks name them."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    order = correlator_antenna_order(spec.n_antennas, spec.seed)
    jitter = np.random.default_rng(spec.seed + 1)
    written = []
    for start in group_start_times(spec):
        for sb in spec.subbands:
            stamp = start + dt.timedelta(seconds=int(jitter.integers(0, spec.max_jitter_s + 1)))
            path = output_dir / subband_file_name(stamp, sb)
            write_subband_file(path, spec, sb, start, order)
            log.info("wrote %s", path)
            written.append(path)
    return sorted(written)


def drop_over_time(
    spec: SimulationSpec,
    output_dir: Path | str,
    *,
    group_interval_s: float,
    node_jitter_s: float,
    hold_incomplete_s: float = 0.5,
    missing: frozenset[tuple[int, int]] = frozenset(),
) -> list[tuple[float, Path]]:
    """Write the groups as the correlator nodes do, in real time: group ``i`` starts
    ``i * group_interval_s`` seconds after the call; each subband's node starts its file a
    random 0..``node_jitter_s`` s later, keeps it ``_incomplete`` for ``hold_incomplete_s`` and
    renames it. ``missing``: (group index, subband) pairs never written (a node down).
    Returns (seconds after the call, path) of each rename, in order."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    order = correlator_antenna_order(spec.n_antennas, spec.seed)
    rng = np.random.default_rng(spec.seed + 2)
    schedule = []
    for i, start in enumerate(group_start_times(spec)):
        for sb in spec.subbands:
            if (i, sb) not in missing:
                delay = float(rng.uniform(0, node_jitter_s))
                stamp = start + dt.timedelta(seconds=int(delay))
                schedule.append((i * group_interval_s + delay, sb, start, stamp))
    # each node writes its file, then renames it hold_incomplete_s later (nodes in parallel)
    events = []
    for at, sb, start, stamp in schedule:
        path = output_dir / subband_file_name(stamp, sb)
        events.append((at, "write", path, sb, start))
        events.append((at + hold_incomplete_s, "rename", path, sb, start))
    began, dropped = time.monotonic(), []
    for at, action, path, sb, start in sorted(events, key=lambda e: (e[0], e[1] == "write")):
        time.sleep(max(0.0, at - (time.monotonic() - began)))
        if action == "write":
            write_subband_file(path, spec, sb, start, order, rename=False)
        else:
            os.replace(path.with_name(path.stem + INCOMPLETE_SUFFIX), path)
            dropped.append((round(time.monotonic() - began, 2), path))
    return dropped


def simulate_to_record(spec: dict, record_path: str | os.PathLike) -> list[Path]:
    """Simulate into the directory of ``record_path`` and write there a JSON record of the spec
    and the files (the output the ``simulate`` rule declares)."""
    spec_obj = SimulationSpec(**{**spec, "subbands": tuple(spec.get("subbands", range(16)))})
    record_path = Path(record_path)
    files = simulate(spec_obj, record_path.parent)
    record = {"spec": asdict(spec_obj), "files": [str(f) for f in files]}
    record_path.write_text(json.dumps(record, indent=1))
    return files


def main(argv: list[str] | None = None) -> int:
    """Command line: ``dsa110ms-simulate OUTPUT_DIR [options]``."""
    defaults = SimulationSpec()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("output_dir", type=Path)
    p.add_argument("--full-size", action="store_true", help="96 antennas, 24 integrations")
    p.add_argument("--antennas", type=int, default=defaults.n_antennas)
    p.add_argument("--integrations", type=int, default=defaults.n_integrations)
    p.add_argument("--groups", type=int, default=defaults.n_groups)
    p.add_argument(
        "--subbands", type=int, nargs="+", default=list(defaults.subbands), help="e.g. 0 1 2"
    )
    p.add_argument("--pointing-dec-deg", type=float, default=defaults.pointing_dec_deg)
    p.add_argument("--source-ha-offset-deg", type=float, default=defaults.source_ha_offset_deg)
    p.add_argument("--source-dec-offset-deg", type=float, default=defaults.source_dec_offset_deg)
    p.add_argument("--start", default=defaults.start, help="UTC, YYYY-MM-DDTHH:MM:SS")
    p.add_argument("--seed", type=int, default=defaults.seed)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    spec = SimulationSpec(
        n_antennas=a.antennas,
        n_integrations=a.integrations,
        n_groups=a.groups,
        subbands=tuple(a.subbands),
        pointing_dec_deg=a.pointing_dec_deg,
        source_ha_offset_deg=a.source_ha_offset_deg,
        source_dec_offset_deg=a.source_dec_offset_deg,
        start=a.start,
        seed=a.seed,
    )
    if a.full_size:
        spec = replace(spec, **FULL_SIZE)
    simulate(spec, a.output_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
