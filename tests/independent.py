"""Independent references for the MS contents, computed with astropy (not pyuvdata).

UVW: for each row, the field's ICRS direction is transformed with astropy to the observed
hour angle / declination frame (topocentric, aberration, precession-nutation, polar motion, no
refraction: the frame of pyuvdata's "apparent" coordinates), the ITRF baseline is rotated into
that frame by the site longitude, projected onto (u, v, w) toward the field, then rotated by the
position angle of the observed frame's north as seen in ICRS.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.coordinates import EarthLocation, HADec, SkyCoord
from astropy.time import Time

from dsa110ms import casa
from dsa110ms import telescope as tel

SITE = EarthLocation.from_geodetic(
    tel.LONGITUDE_DEG * u.deg, tel.LATITUDE_DEG * u.deg, tel.ALTITUDE_M * u.m
)


def uvw_toward(field_ra, field_dec, time_mjd_s, baselines_itrf, site=SITE):
    """UVW (m) of ITRF baseline vectors toward an ICRS direction (radians) at one time."""
    obstime = Time(time_mjd_s / 86400.0, format="mjd", scale="utc")
    frame = HADec(obstime=obstime, location=site)
    src = SkyCoord(field_ra * u.rad, field_dec * u.rad, frame="icrs")
    obs = src.transform_to(frame)
    ha, dec = obs.ha.rad, obs.dec.rad
    north = SkyCoord(obs.ha, obs.dec + 1e-6 * u.rad, frame=frame).transform_to("icrs")
    pa = -src.position_angle(north).wrap_at(np.pi * u.rad).rad
    lon = site.lon.rad
    x = np.cos(lon) * baselines_itrf[:, 0] + np.sin(lon) * baselines_itrf[:, 1]  # to meridian
    y = -np.sin(lon) * baselines_itrf[:, 0] + np.cos(lon) * baselines_itrf[:, 1]  # east
    z = baselines_itrf[:, 2]
    uu = np.sin(ha) * x + np.cos(ha) * y
    vv = -np.sin(dec) * np.cos(ha) * x + np.sin(dec) * np.sin(ha) * y + np.cos(dec) * z
    ww = np.cos(dec) * np.cos(ha) * x - np.cos(dec) * np.sin(ha) * y + np.sin(dec) * z
    c, s = np.cos(pa), np.sin(pa)
    return np.stack([c * uu - s * vv, s * uu + c * vv, ww], axis=1), ha


def ms_uvw_reference(ms_path):
    """(UVW in the MS, independent UVW, hour angle of each row's field) for every row.

    The MS convention (pyuvdata flip_conj): UVW = projection of x(ANTENNA1) - x(ANTENNA2).
    """
    with casa.table(ms_path) as tb:
        uvw = tb.getcol("UVW").T
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        time, field = tb.getcol("TIME"), tb.getcol("FIELD_ID")
    with casa.table(f"{ms_path}/FIELD") as tb:
        phase_dir = tb.getcol("PHASE_DIR")[:, 0, :].T
    with casa.table(f"{ms_path}/ANTENNA") as tb:
        pos = tb.getcol("POSITION").T
    expected = np.empty_like(uvw)
    ha = np.empty(len(uvw))
    for t in np.unique(time):
        for f in np.unique(field[time == t]):
            rows = np.flatnonzero((time == t) & (field == f))
            expected[rows], ha[rows] = uvw_toward(*phase_dir[f], t, pos[a1[rows]] - pos[a2[rows]])
    return uvw, expected, ha


def source_icrs(spec, time_mjd_s: float) -> tuple[float, float]:
    """ICRS (ra, dec) in radians of the simulator's point source, which sits at hour angle
    ``source_ha_offset_deg`` and Dec ``pointing_dec_deg + source_dec_offset_deg`` at the middle
    integration (``time_mjd_s``)."""
    obstime = Time(time_mjd_s / 86400.0, format="mjd", scale="utc")
    src = SkyCoord(
        spec.source_ha_offset_deg * u.deg,
        (spec.pointing_dec_deg + spec.source_dec_offset_deg) * u.deg,
        frame=HADec(obstime=obstime, location=SITE),
    ).transform_to("icrs")
    return src.ra.rad, src.dec.rad


def dft_flux(ms_path, ra: float, dec: float) -> float:
    """Mean real part of the cross-correlation DATA (first pol) phased to (ra, dec), Jy.

    Uses CASA's measurement equation for an MS, V = sum S exp(+2 pi i (u l + v m + w (n - 1)) /
    lambda) with the MS's UVW: the flux of a point source at (ra, dec), ~0 at its mirror image.
    """
    with casa.table(ms_path) as tb:
        data = tb.getcol("DATA")[0].T  # (nrow, nchan)
        uvw = tb.getcol("UVW").T
        cross = tb.getcol("ANTENNA1") != tb.getcol("ANTENNA2")
        field, ddid = tb.getcol("FIELD_ID"), tb.getcol("DATA_DESC_ID")
    with casa.table(f"{ms_path}/FIELD") as tb:
        phase_dir = tb.getcol("PHASE_DIR")[:, 0, :].T
    with casa.table(f"{ms_path}/DATA_DESCRIPTION") as tb:
        spw_of_dd = tb.getcol("SPECTRAL_WINDOW_ID")
    with casa.table(f"{ms_path}/SPECTRAL_WINDOW") as tb:
        freqs = np.stack([tb.getcell("CHAN_FREQ", i) for i in range(tb.nrows())])
    ra0, dec0 = phase_dir[field].T
    lcos = np.cos(dec) * np.sin(ra - ra0)
    mcos = np.sin(dec) * np.cos(dec0) - np.cos(dec) * np.sin(dec0) * np.cos(ra - ra0)
    ncos = np.sqrt(1 - lcos**2 - mcos**2)
    delay = uvw[:, 0] * lcos + uvw[:, 1] * mcos + uvw[:, 2] * (ncos - 1)  # m
    wavelength = 299792458.0 / freqs[spw_of_dd[ddid]]  # (nrow, nchan)
    phased = data * np.exp(-2j * np.pi * delay[:, None] / wavelength)
    return float(phased[cross].real.mean())


def mirrored(ra0: float, dec0: float, ra: float, dec: float) -> tuple[float, float]:
    """The position reflected through the phase centre (what a sign error images)."""
    return 2 * ra0 - ra, 2 * dec0 - dec
