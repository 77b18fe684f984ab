"""Where a DSA-110 MS is phased (config ``phase_center``), and the rotation that gets it there.

- ``per_integration`` (default): one FIELD per integration, the meridian (HA = 0, Dec = the
  pointing) the correlator fringe-stopped it to; visibilities as written (:mod:`dsa110ms.uvh5`).
- ``group_meridian``: one FIELD, the meridian at the pointing declination at the group's middle
  time (the mean of its first and last integration times), as an ICRS direction.
- ``fixed``: one FIELD at (``phase_center_ra_deg``, ``phase_center_dec_deg``), ICRS.

With one FIELD, UVW are computed toward it (:mod:`dsa110ms.geometry`, as for the meridians) and
the visibilities rotated to it, as ``casatasks.phaseshift`` of the per_integration MS would:
V' = V exp(-2 pi i dw f / c), dw = w(new) - w(old) of the baseline-time (metres; pyuvdata's
sign, ``UVData._apply_w_proj``), f the channel frequency (Hz).

A baseline's w is its ``ant_2``'s minus its ``ant_1``'s (:func:`dsa110ms.geometry.antenna_w`),
so the rotation of a whole group is known from dw per antenna and integration: the group's
*phase plan* (:class:`PhasePlan`, Ntimes x Nants numbers), computed once per group from one of
its files (rule ``phase_plan``: pyuvdata and astropy, ~1.5 s), and applied by each part job
while its data are in memory (:meth:`PhasePlan.rotate`: NumPy alone, no second pass over the
data). The template computes the same directions from the same file (:func:`field_directions`)
and records the centre; the join checks that every part was rotated to it.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsa110ms.errors import InputFileError, ScratchError
from dsa110ms.rawuvh5 import SPEED_OF_LIGHT_M_S

#: The one FIELD's name, per kind.
FIELD_NAMES = {"group_meridian": "group_meridian", "fixed": "fixed_center"}
#: Rows rotated at a time (bounded temporary memory: ~block x Nfreqs complex64).
ROTATE_BLOCK_ROWS = 16384


@dataclass(frozen=True)
class PhaseCenter:
    """The config's phase centre: ``kind`` (schema.yaml's ``phase_center``); ``ra_deg``,
    ``dec_deg`` (ICRS, degrees) for ``fixed``."""

    kind: str = "per_integration"
    ra_deg: float | None = None
    dec_deg: float | None = None

    @classmethod
    def of(cls, settings) -> PhaseCenter:
        return cls(
            settings.phase_center, settings.phase_center_ra_deg, settings.phase_center_dec_deg
        )

    @property
    def one_field(self) -> bool:
        """Whether the MS has one FIELD (visibilities rotated to it)."""
        return self.kind != "per_integration"

    def icrs(self, times_jd: np.ndarray, pointing_dec: float, telescope_location):
        """(RA, Dec) of the one FIELD, ICRS radians, for a group with these (unique, sorted)
        integration times (JD) and pointing declination (radians, apparent)."""
        if self.kind == "fixed":
            return np.radians(self.ra_deg), np.radians(self.dec_deg)
        if self.kind != "group_meridian":
            raise ValueError(f"phase centre {self.kind!r} has no one field")
        from pyuvdata.utils.phasing import transform_app_to_icrs
        from pyuvdata.utils.times import get_lst_for_time

        middle = np.array([(times_jd[0] + times_jd[-1]) / 2])
        lst = get_lst_for_time(jd_array=middle, telescope_loc=telescope_location)
        ra, dec = transform_app_to_icrs(
            time_array=middle,
            app_ra=lst,
            app_dec=np.array([pointing_dec]),
            telescope_loc=telescope_location,
        )
        return float(ra[0]), float(dec[0])

    def recorded(self) -> dict:
        """As an MS's stamp records it (numbers as floats: 180 and 180.0 are one centre)."""
        if self.kind == "fixed":
            return {"kind": self.kind, "ra_deg": float(self.ra_deg), "dec_deg": float(self.dec_deg)}
        return {"kind": self.kind}


#: The default: one FIELD per integration, nothing rotated.
PER_INTEGRATION = PhaseCenter()


def field_directions(uv, phase_center: PhaseCenter, meridians):
    """The one FIELD's directions at each integration of ``uv`` (:class:`FieldDirections`),
    given the integrations' ``meridians`` (where the data are phased now)."""
    from dsa110ms.geometry import sidereal_fields

    ra, dec = phase_center.icrs(
        meridians.times_jd, float(meridians.app_dec[0]), uv.telescope.location
    )
    return sidereal_fields(meridians.times_jd, meridians.lst, ra, dec, uv.telescope.location)


@dataclass(frozen=True)
class PhasePlan:
    """The rotation of a group's visibilities to its one FIELD: ``delta_w`` (metres, Ntimes x
    Nants) of each antenna at each integration time ``times_jd`` (JD, sorted) and antenna
    ``antenna_numbers``; made from ``source`` (whose geometry digest is ``geometry_digest``:
    every file rotated by the plan must share it) toward ``center`` (ICRS radians)."""

    kind: str
    center: tuple[float, float]
    source: str
    geometry_digest: str
    times_jd: np.ndarray
    antenna_numbers: np.ndarray
    delta_w: np.ndarray

    def field(self) -> dict:
        """The one FIELD as an MS's FIELD table gives it (:func:`dsa110ms.ms.template.field_of`)."""
        return {"fields": 1, "name": FIELD_NAMES[self.kind], "direction": list(self.center)}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the plan at ``path`` (a new ``.npz``), whole or not at all."""
        path = Path(path)
        meta = {
            "kind": self.kind,
            "center": list(self.center),
            "source": self.source,
            "geometry_digest": self.geometry_digest,
        }
        writing = path.with_name(f".{path.name}.writing")
        with open(writing, "wb") as f:
            np.savez(
                f,
                meta=np.array(json.dumps(meta)),
                times_jd=self.times_jd,
                antenna_numbers=self.antenna_numbers,
                delta_w=self.delta_w,
            )
        os.rename(writing, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> PhasePlan:
        """The plan at ``path``; one that cannot be read is a :class:`ScratchError` naming it."""
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                return cls(
                    meta["kind"],
                    tuple(meta["center"]),
                    meta["source"],
                    meta["geometry_digest"],
                    z["times_jd"],
                    z["antenna_numbers"],
                    z["delta_w"],
                )
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise ScratchError(
                f"{path}: the group's phase plan cannot be read ({type(exc).__name__}: {exc}); "
                "a rerun makes it again"
            ) from exc

    def rotate(
        self,
        data: np.ndarray,
        *,
        time_array: np.ndarray,
        ant_1: np.ndarray,
        ant_2: np.ndarray,
        freqs: np.ndarray,
        geometry_digest: str,
        path: str,
    ) -> np.ndarray:
        """Rotate ``data`` (file rows x channels x polarizations, complex) in place to the
        plan's centre: row (t, a1, a2) times P[t, a2] conj(P[t, a1]), P = exp(-2 pi i dw f/c)
        per antenna (in complex64; an autocorrelation is left as it is). ``freqs``: Hz, in
        ``data``'s channel order. A file whose ``geometry_digest`` is not the plan's is left
        unrotated (:meth:`rotates`)."""
        if not self.rotates(geometry_digest):
            return data
        t = np.searchsorted(self.times_jd, time_array)
        t = np.minimum(t, len(self.times_jd) - 1)
        if not np.array_equal(self.times_jd[t], time_array):
            raise InputFileError(
                f"{path}: integration times differ from the phase plan's (made from "
                f"{self.source}); not rotated"
            )
        i1, i2 = self._antenna_index(ant_1, path), self._antenna_index(ant_2, path)
        cycles = self.delta_w[:, :, None] * (np.asarray(freqs, float) / SPEED_OF_LIGHT_M_S)
        per_antenna = np.exp(-2j * np.pi * cycles).astype(np.complex64)  # (Nt, Na, Nf)
        cross = ant_1 != ant_2
        for start in range(0, len(t), ROTATE_BLOCK_ROWS):
            rows = slice(start, start + ROTATE_BLOCK_ROWS)
            tb = t[rows]
            phasor = per_antenna[tb, i2[rows]] * per_antenna[tb, i1[rows]].conj()
            phasor[~cross[rows]] = 1
            data[rows] *= phasor[:, :, None]
        return data

    def rotates(self, geometry_digest: str) -> bool:
        """Whether a file of this geometry digest is rotated by the plan: only one that shares
        its source's (times, baselines, antennas, site, pointing). The others are written
        unrotated, and the join names the file that differs from the rest of the group."""
        return geometry_digest == self.geometry_digest

    def _antenna_index(self, antennas: np.ndarray, path: str) -> np.ndarray:
        """Each of ``antennas``' (numbers) index in the plan's antennas."""
        order = np.argsort(self.antenna_numbers, kind="stable")
        known = self.antenna_numbers[order]
        at = np.minimum(np.searchsorted(known, antennas), len(known) - 1)
        if not np.array_equal(known[at], antennas):
            unknown = np.asarray(antennas)[known[at] != antennas][0]
            raise InputFileError(
                f"{path}: antenna {unknown} is not in the phase plan (made from {self.source})"
            )
        return order[at]


def make_plan(uv, path: str, phase_center: PhaseCenter, meridians, geometry_digest: str):
    """The plan that rotates ``uv``'s data from its ``meridians`` to the one FIELD."""
    from dsa110ms.geometry import antenna_w

    target = field_directions(uv, phase_center, meridians)
    antennas = {
        "antenna_numbers": uv.telescope.antenna_numbers,
        "antenna_positions": uv.telescope.antenna_positions,
        "telescope_location": uv.telescope.location,
    }
    delta_w = antenna_w(target, **antennas) - antenna_w(meridians, **antennas)
    return PhasePlan(
        phase_center.kind,
        (float(target.icrs_ra[0]), float(target.icrs_dec[0])),
        path,
        geometry_digest,
        meridians.times_jd,
        np.asarray(uv.telescope.antenna_numbers),
        delta_w,
    )


def write_plan(uvh5_path: str, plan_path: str | os.PathLike, phase_center: PhaseCenter) -> Path:
    """Rule phase_plan: the group's plan, from one of its files (its header only)."""
    from dsa110ms.rawuvh5 import combined_digest, file_geometry_items
    from dsa110ms.uvh5 import (
        expected_warnings_ignored,
        integration_meridians,
        pointing_dec,
        read_subband,
    )

    with expected_warnings_ignored():
        uv = read_subband(uvh5_path, read_data=False)
    meridians = integration_meridians(uv, pointing_dec(uv, uvh5_path))
    digest = combined_digest(file_geometry_items(uvh5_path, telescope="dsa110"))
    plan = make_plan(uv, uvh5_path, phase_center, meridians, digest)
    return plan.save(plan_path)
