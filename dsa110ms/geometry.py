"""Phase centres and UVW of DSA-110 data, fringe-stopped on the meridian.

Every integration of a DSA-110 file is phased to (HA = 0, Dec = pt_dec) at its own time. Its
FIELD is the ICRS direction of that apparent position, and its UVW point to it:

- apparent coordinates follow pyuvdata's convention: erfa's observed place (aberration,
  precession-nutation, polar motion; no refraction), expressed against the apparent sidereal time,
  so (HA = 0) means apparent RA = LAST;
- UVW (pyuvdata convention: x(ant_2) - x(ant_1), metres) are the baseline rotated to the apparent
  direction of the field, then by the frame position angle so that v points to ICRS north.

All calls to pyuvdata's helpers use keyword arguments (they are keyword-only; the pipeline this
replaces called them positionally, swallowed the TypeError and fell back to ICRS-as-apparent with
no frame rotation: metres of UVW error). Nothing here catches an error: if the computation fails,
the job fails.

The frame position angle is computed by pyuvdata from two points ``offset_pos`` either side of
the field and measured at the lower one, a bias proportional to the offset: with the default
(0.5 degrees) 3e-5 rad at Dec 55 (5 cm of UVW on a 1.4 km baseline), 0.5 m at Dec 86. Measured
against an independent astropy computation (tests/test_geometry.py) the UVW error scales with the
offset (Dec 86, 1.4 km: 56 mm at 1e-4 rad, 5.6 mm at 1e-5, 0.5 mm at 1e-6, 0.03 mm at 1e-7), so
we use 1e-7 rad, still far above double-precision noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Offset (radians) at which pyuvdata evaluates the frame position angle; see module docstring.
FRAME_PA_OFFSET_RAD = 1e-7


@dataclass(frozen=True)
class FieldDirections:
    """A field direction at each integration time: one per integration (the meridian's) or one
    fixed ICRS direction. Angles in radians, times as JD (UTC)."""

    times_jd: np.ndarray
    lst: np.ndarray  # apparent local sidereal time
    icrs_ra: np.ndarray
    icrs_dec: np.ndarray
    app_ra: np.ndarray
    app_dec: np.ndarray
    frame_pa: np.ndarray

    def index_of(self, time_jd: np.ndarray) -> np.ndarray:
        """Field index of each time (every time must be one of ``times_jd``)."""
        time_jd = np.asarray(time_jd)
        idx = np.searchsorted(self.times_jd, time_jd)
        inside = np.minimum(idx, len(self.times_jd) - 1)
        unknown = (idx >= len(self.times_jd)) | (self.times_jd[inside] != time_jd)
        if np.any(unknown):
            first = np.flatnonzero(np.reshape(unknown, -1))[0]
            time = float(np.reshape(time_jd, -1)[first])
            raise ValueError(
                f"time {time:.8f} JD (index {first}) is not one of the {len(self.times_jd)} "
                "integration times of these fields"
            )
        return idx


def meridian_fields(times_jd, lst, dec: float, telescope_location) -> FieldDirections:
    """Fields at (HA = 0, Dec = ``dec``) for each (unique, sorted) integration time."""
    from pyuvdata.utils.phasing import transform_app_to_icrs

    times_jd = np.asarray(times_jd, dtype=float)
    icrs_ra, icrs_dec = transform_app_to_icrs(
        time_array=times_jd,
        app_ra=np.asarray(lst, dtype=float),
        app_dec=np.full(times_jd.shape, dec),
        telescope_loc=telescope_location,
    )
    return sidereal_fields(times_jd, lst, icrs_ra, icrs_dec, telescope_location)


def sidereal_fields(times_jd, lst, icrs_ra, icrs_dec, telescope_location) -> FieldDirections:
    """The ICRS direction(s) ``icrs_ra``, ``icrs_dec`` (one, or one per time) at each (unique,
    sorted) integration time: their apparent place and frame position angle."""
    from pyuvdata.utils.phasing import calc_app_coords, calc_frame_pos_angle

    times_jd = np.asarray(times_jd, dtype=float)
    lst = np.asarray(lst, dtype=float)
    icrs_ra = np.broadcast_to(np.asarray(icrs_ra, dtype=float), times_jd.shape).copy()
    icrs_dec = np.broadcast_to(np.asarray(icrs_dec, dtype=float), times_jd.shape).copy()
    app_ra, app_dec = calc_app_coords(
        lon_coord=icrs_ra,
        lat_coord=icrs_dec,
        coord_frame="icrs",
        coord_epoch=2000.0,
        coord_type="sidereal",
        time_array=times_jd,
        lst_array=lst,
        telescope_loc=telescope_location,
        all_times_unique=True,
    )
    frame_pa = calc_frame_pos_angle(
        time_array=times_jd,
        app_ra=app_ra,
        app_dec=app_dec,
        telescope_loc=telescope_location,
        ref_frame="icrs",
        ref_epoch=2000.0,
        offset_pos=FRAME_PA_OFFSET_RAD,
    )
    return FieldDirections(times_jd, lst, icrs_ra, icrs_dec, app_ra, app_dec, frame_pa)


def baseline_uvw(
    fields: FieldDirections,
    *,
    time_jd: np.ndarray,
    lst: np.ndarray,
    ant_1: np.ndarray,
    ant_2: np.ndarray,
    antenna_numbers: np.ndarray,
    antenna_positions: np.ndarray,
    telescope_location,
) -> np.ndarray:
    """UVW (m, pyuvdata convention) of each baseline-time toward its field, shape (Nblts, 3)."""
    from pyuvdata.utils.phasing import calc_uvw

    idx = fields.index_of(time_jd)
    return calc_uvw(
        app_ra=fields.app_ra[idx],
        app_dec=fields.app_dec[idx],
        frame_pa=fields.frame_pa[idx],
        lst_array=lst,
        use_ant_pos=True,
        antenna_positions=antenna_positions,
        antenna_numbers=antenna_numbers,
        ant_1_array=ant_1,
        ant_2_array=ant_2,
        telescope_lat=telescope_location.lat.rad,
        telescope_lon=telescope_location.lon.rad,
    )


def antenna_w(
    fields: FieldDirections, *, antenna_numbers, antenna_positions, telescope_location
) -> np.ndarray:
    """w (m) of each antenna's position toward the field at each integration time, shape
    (Ntimes, Nants): a baseline's w is its ``ant_2``'s minus its ``ant_1``'s, which is how
    pyuvdata computes it (:func:`baseline_uvw`; here against an antenna at the reference
    position)."""
    antenna_numbers = np.asarray(antenna_numbers)
    n_times, n_ants = len(fields.times_jd), len(antenna_numbers)
    origin = int(antenna_numbers.max()) + 1
    uvw = baseline_uvw(
        fields,
        time_jd=np.repeat(fields.times_jd, n_ants),
        lst=np.repeat(fields.lst, n_ants),
        ant_1=np.full(n_times * n_ants, origin),
        ant_2=np.tile(antenna_numbers, n_times),
        antenna_numbers=np.append(antenna_numbers, origin),
        antenna_positions=np.vstack([antenna_positions, np.zeros(3)]),
        telescope_location=telescope_location,
    )
    return uvw[:, 2].reshape(n_times, n_ants)
