"""DSA-110 facts shared by the simulator and the converter.

Units: frequencies in Hz, angles in radians unless a name ends in ``_deg``, lengths in metres,
times in seconds unless a name says JD or MJD. Sources: the telescope's file writer
(dsa110-meridian-fs) and ``shared/dsa110-format.md``.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources

import numpy as np

#: Name the correlator writes in its files.
TELESCOPE_NAME = "OVRO_MMA"
#: Name written in the MS (OBSERVATION::TELESCOPE_NAME), the name DSA-110's own pipelines write:
#: EveryBeam gives names starting "DSA_" its DSA-110 (Airy) beam, where "OVRO_MMA" and
#: "OVRO-LWA" get OVRO-LWA's dipoles; pyuvdata places the telescope by it once a CASA task has
#: dropped OBSERVATION::TELESCOPE_LOCATION. Stock casadata does not know it (listobs fails): the
#: package's CASA measures overlay adds it (:mod:`dsa110ms.casa`).
MS_TELESCOPE_NAME = "DSA_110"
#: Names a site may choose instead (config ``ms_telescope_name``): "OVRO-LWA" is the one name
#: stock casadata knows at this site (0.9 km from the DSA-110 reference), for CASA installations
#: without the overlay; never the default, and "OVRO_MMA" (placed by CASA at the centre of the
#: Earth) is never written.
MS_TELESCOPE_NAMES = (MS_TELESCOPE_NAME, "OVRO-LWA")
#: OBSERVATION::OBSERVER (pyuvdata writes the telescope's name when the file gives none).
OBSERVER = "DSA-110 operations"
INSTRUMENT = "DSA"
OBJECT_NAME = "search"

#: OVRO array reference position (WGS84) used by the file writer.
LATITUDE_DEG = 37.2314
LONGITUDE_DEG = -118.2817
ALTITUDE_M = 1222.0

DISH_DIAMETER_M = 4.65
N_PADS = 117
#: Station 117 has no surveyed elevation; the telescope software uses this value for it.
DEFAULT_PAD_ELEVATION_M = 1182.6
N_SUBBANDS = 16

#: Integration time of one visibility dump, seconds.
INTEGRATION_TIME_S = 12.884901888
#: Integrations in one file; a new group starts every 24 x 12.88 s = 309.2 s.
INTEGRATIONS_PER_FILE = 24

#: Native correlator channel width and the top of the band, Hz.
NATIVE_CHANNEL_WIDTH_HZ = 30517.578125
BAND_TOP_HZ = 1.53e9
#: Native channel at which subband 0 starts, native channels per subband, averaging factor.
FIRST_NATIVE_CHANNEL = 1024
NATIVE_CHANNELS_PER_SUBBAND = 384
CHANNEL_AVERAGING = 8
CHANNELS_PER_SUBBAND = NATIVE_CHANNELS_PER_SUBBAND // CHANNEL_AVERAGING  # 48
CHANNEL_WIDTH_HZ = NATIVE_CHANNEL_WIDTH_HZ * CHANNEL_AVERAGING  # 244140.625

#: Sidereal rotation rate of the Earth, radians per SI second.
EARTH_ROTATION_RAD_PER_S = 2 * np.pi * 1.00273781191135448 / 86400.0


def subband_frequencies(subband: int, n_channels: int = CHANNELS_PER_SUBBAND) -> np.ndarray:
    """Channel centres of one subband in file order (descending), Hz.

    f(s, c) = 1.53 GHz - (1024 + 384 s + 8 c + 3.5) * 30517.578125 Hz, so sb00 is the highest
    band and channels descend within a file.
    """
    c = np.arange(n_channels)
    native = FIRST_NATIVE_CHANNEL + NATIVE_CHANNELS_PER_SUBBAND * subband + CHANNEL_AVERAGING * c
    return BAND_TOP_HZ - (native + (CHANNEL_AVERAGING - 1) / 2) * NATIVE_CHANNEL_WIDTH_HZ


@cache
def pad_positions_wgs84() -> np.ndarray:
    """Surveyed (latitude_deg, longitude_deg, elevation_m) of pads 1..117, shape (117, 3)."""
    text = resources.files("dsa110ms").joinpath("data/dsa110_station_coordinates.csv").read_text()
    rows = list(csv.reader(line for line in text.splitlines() if not line.startswith("#")))
    header, body = rows[0], rows[1:]
    if header[:4] != ["station", "latitude_deg", "longitude_deg", "elevation_m"]:
        raise ValueError(f"unexpected station table header {header}")
    table = np.array(
        [
            [float(lat), float(lon), float(elev or DEFAULT_PAD_ELEVATION_M)]
            for _, lat, lon, elev in body
        ]
    )
    stations = [int(row[0]) for row in body]
    if stations != list(range(1, N_PADS + 1)):
        raise ValueError("station table must list stations 1..117 in order")
    return table


def pad_positions_ecef_offsets() -> np.ndarray:
    """ECEF offsets (m) of the 117 pads from the array reference position, shape (117, 3).

    This is what the file writer stores as ``antenna_positions``.
    """
    from pyuvdata.utils import XYZ_from_LatLonAlt

    pads = pad_positions_wgs84()
    xyz = XYZ_from_LatLonAlt(np.radians(pads[:, 0]), np.radians(pads[:, 1]), pads[:, 2])
    ref = XYZ_from_LatLonAlt(np.radians(LATITUDE_DEG), np.radians(LONGITUDE_DEG), ALTITUDE_M)
    return xyz - ref
