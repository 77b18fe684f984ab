"""Reading one DSA-110 subband file with pyuvdata and fixing what the correlator writes.

The files say ``phase_type = "drift"`` but every integration is already fringe-stopped to the
meridian, (HA = 0, Dec = pt_dec) at that integration's time, with pt_dec in
``extra_keywords["phase_center_dec"]`` (radians). pyuvdata reads that as one "unprojected" phase
centre, which ``write_ms`` refuses. We give each integration its own sidereal phase centre (the
ICRS direction of that apparent position) *without rotating the visibilities*, and recompute UVW
for each integration toward it (:mod:`dsa110ms.geometry`).
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

import numpy as np

from dsa110ms.errors import InputFileError
from dsa110ms.geometry import FieldDirections, baseline_uvw, meridian_fields
from dsa110ms.phasecenter import FIELD_NAMES, PER_INTEGRATION, PhaseCenter, field_directions
from dsa110ms.telescope import MS_TELESCOPE_NAME, OBSERVER
from dsa110ms.timetables import check_times

log = logging.getLogger(__name__)

#: pyuvdata warnings that are expected for every DSA-110 file and say nothing about this one.
EXPECTED_WARNINGS = (
    # Files store meridian UVW for "drift" data; we replace them.
    "The uvw_array does not match the expected values",
    # The correlator lists baselines in its own order; pyuvdata writes ant1 < ant2 rows.
    "UVData object contains a mix of baseline conjugation states",
    # Correlator data are uncalibrated.
    "Writing in the MS file that the units of the data are uncalib",
)


@contextmanager
def expected_warnings_ignored():
    """pyuvdata's :data:`EXPECTED_WARNINGS` silenced while the block runs."""
    with warnings.catch_warnings():
        for message in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        yield


#: Field names are the integration index so that the 16 subbands of a group name them alike.
FIELD_NAME_FORMAT = "meridian_{:02d}"


def enable_numba_cache() -> None:
    """Cache pyuvdata's numba functions on disk.

    pyuvdata compiles its baseline-number kernels (``pyuvdata.utils.bls_numba``) without
    ``cache=True``, so every job process paid ~2.5 s of JIT compilation on its first read.
    ``enable_caching`` is what ``cache=True`` does; numba keys the cache on the source and the
    signature, and falls back to a per-user cache directory if site-packages is read-only.
    """
    from numba.core.dispatcher import Dispatcher
    from pyuvdata.utils import bls_numba

    for obj in vars(bls_numba).values():
        if isinstance(obj, Dispatcher):
            obj.enable_caching()


def read_subband(path: str, *, freq_chans=None, read_data=True) -> UVData:  # noqa: F821
    """Read one UVH5 subband file (only channels ``freq_chans``, file order, if given; only its
    metadata if not ``read_data``); errors name the file and the reason.

    The correlator stores UVW as float32, which pyuvdata's check rejects: the check runs after
    casting them to float64. Otherwise as pyuvdata's own default reading: autocorrelations with
    imaginary parts are made real (``fix_autos``; :func:`dsa110ms.rawuvh5.fix_autos` for parts).
    Data beyond the bundled Earth-rotation tables are refused or warned about
    (:func:`dsa110ms.timetables.check_times`).
    """
    import hdf5plugin  # noqa: F401 - compression filters beyond HDF5's own, as the part reader
    from pyuvdata import UVData

    enable_numba_cache()
    try:
        uv = UVData.from_file(
            path, file_type="uvh5", freq_chans=freq_chans, read_data=read_data, run_check=False
        )
        uv.uvw_array = uv.uvw_array.astype(np.float64)
        uv.check(check_autos=True, fix_autos=True)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise InputFileError(
            f"{path}: cannot be read as UVH5 ({type(exc).__name__}: {exc})"
        ) from exc
    check_times(path, uv.time_array)
    return uv


def keyword_dec(uv) -> float | None:
    """The pointing declination (radians) the file's extra keywords give (DSA-110 writes it as
    ``phase_center_dec``), or None if they give no number."""
    try:
        return float(uv.extra_keywords["phase_center_dec"])
    except (KeyError, TypeError, ValueError):
        return None


def pointing_dec(uv, path: str) -> float:
    """Pointing declination (radians) from the file's extra keywords (a DSA-110 file has it)."""
    dec = keyword_dec(uv)
    if dec is None:
        raise InputFileError(
            f"{path}: extra_keywords has no numeric phase_center_dec; not a DSA-110 file?"
        )
    return dec


def integration_meridians(uv, dec: float) -> FieldDirections:
    """(HA = 0, Dec = ``dec``) at each integration time of ``uv``."""
    times, first = np.unique(uv.time_array, return_index=True)
    return meridian_fields(times, uv.lst_array[first], dec, uv.telescope.location)


def set_meridian_phase_centres(uv, dec: float) -> FieldDirections:
    """Give every integration the phase centre (HA = 0, Dec = dec) and its true UVW.

    Visibilities are not changed. See :mod:`dsa110ms.geometry` for the conventions.
    """
    fields = integration_meridians(uv, dec)
    names = [FIELD_NAME_FORMAT.format(i) for i in range(len(fields.times_jd))]
    set_phase_centres(uv, fields, names)
    return fields


def set_phase_centres(uv, fields: FieldDirections, names: list[str]) -> None:
    """Phase centres of ``uv`` (metadata only): ``names[i]`` at the ICRS direction
    ``fields.icrs_*[i]``, given to each integration whose time is ``fields.times_jd[i]``
    (one name: one field for every integration); UVW toward them."""
    uv.phase_center_catalog = {}
    for i, name in enumerate(names):
        uv._add_phase_center(
            name,
            cat_type="sidereal",
            cat_lon=float(fields.icrs_ra[i]),
            cat_lat=float(fields.icrs_dec[i]),
            cat_frame="icrs",
            cat_epoch=2000.0,
            cat_id=i,
        )
    idx = fields.index_of(uv.time_array)
    uv.phase_center_id_array = idx if len(names) > 1 else np.zeros_like(idx)
    uv.phase_center_app_ra = fields.app_ra[idx]
    uv.phase_center_app_dec = fields.app_dec[idx]
    uv.phase_center_frame_pa = fields.frame_pa[idx]
    uv.uvw_array = baseline_uvw(
        fields,
        time_jd=uv.time_array,
        lst=uv.lst_array,
        ant_1=uv.ant_1_array,
        ant_2=uv.ant_2_array,
        antenna_numbers=uv.telescope.antenna_numbers,
        antenna_positions=uv.telescope.antenna_positions,
        telescope_location=uv.telescope.location,
    )


def phase_to_one_field(uv, phase_center: PhaseCenter, meridians: FieldDirections) -> None:
    """The one FIELD of ``phase_center`` (:mod:`dsa110ms.phasecenter`) for ``uv``, phased to its
    integrations' ``meridians``: its phase centre and UVW, and its visibilities (if read)
    rotated to it by pyuvdata (the reference the part jobs' rotation is tested against)."""
    target = field_directions(uv, phase_center, meridians)
    old_w = uv.uvw_array[:, 2].copy()
    set_phase_centres(uv, target, [FIELD_NAMES[phase_center.kind]])
    uv._apply_w_proj(new_w_vals=uv.uvw_array[:, 2], old_w_vals=old_w)


def prepare_dsa110(
    uv,
    path: str,
    ms_telescope_name: str = MS_TELESCOPE_NAME,
    phase_center: PhaseCenter = PER_INTEGRATION,
) -> FieldDirections:
    """DSA-110 fix-ups, in place: phase centres (the meridian of each integration, or the one
    FIELD of ``phase_center``) and UVW, alt-az mounts, the MS's
    telescope name (:data:`dsa110ms.telescope.MS_TELESCOPE_NAME` unless a site chose another of
    :data:`dsa110ms.telescope.MS_TELESCOPE_NAMES`) and observer. Returns where the dishes
    pointed: the meridian fields."""
    fields = set_meridian_phase_centres(uv, pointing_dec(uv, path))
    if phase_center.one_field:
        phase_to_one_field(uv, phase_center, fields)
    # pyuvdata writes mounts it does not know as "other"; CASA expects "alt-az" for these dishes.
    uv.telescope.mount_type = ["alt-az"] * uv.telescope.Nants
    uv.telescope.name = ms_telescope_name
    # pyuvdata's OBSERVATION::OBSERVER is this keyword, else the telescope's name
    uv.extra_keywords["observer"] = OBSERVER
    return fields


def phase_to_first_zenith(uv) -> None:
    """Phase the unprojected baseline-times to the zenith of the first time, rotating their
    visibilities: the very call pyuvdata's ``write_ms(force_phase=True)`` makes."""
    from astropy.time import Time

    unprojected = uv._check_for_cat_type("unprojected")
    uv.phase_to_time(Time(uv.time_array[0], format="jd"), select_mask=unprojected)


def first_zenith_rotation(path: str) -> WRotation:  # noqa: F821 - imported lazily
    """The rotation :func:`phase_to_first_zenith` applies to a file's visibilities, from its
    metadata alone: for a part job, which reads the visibilities with h5py."""
    from dsa110ms.rawuvh5 import WRotation

    uv = read_subband(path, read_data=False)
    rows = uv._check_for_cat_type("unprojected")
    phase_to_first_zenith(uv)
    # the old w of unprojected rows is 0 (pyuvdata's phase); their new w is the new UVW's
    return WRotation(rows=rows, delta_w=uv.uvw_array[:, 2].copy())


def meridian_dec(uv) -> float:
    """Declination (radians) of the meridian fields of generic data: the file's pointing
    (``extra_keywords["phase_center_dec"]``, as DSA-110 writes it) or else the zenith's, the
    telescope's latitude (where unprojected data are phased at every instant)."""
    dec = keyword_dec(uv)
    return float(uv.telescope.location.lat.rad) if dec is None else dec


#: Distance (m) beyond which CASA's position of a telescope name is called wrong.
SITE_TOLERANCE_M = 10_000.0


def warn_if_casa_misplaces(uv, path: str) -> None:
    """Warn (generic mode keeps the file's telescope name) when CASA, which finds an
    observatory's position by the MS's telescope name, does not know the name (listobs fails)
    or places it far from the file's location (antenna offsets and frame conversions wrong)."""
    from dsa110ms.casa import observatory_position

    name = uv.telescope.name
    where = observatory_position(name)
    if where is None:
        log.warning(
            "%s: CASA does not know the telescope name %r: listobs will fail on the MS and "
            "CASA tasks will take antenna 0's position for the observatory's",
            path,
            name,
        )
        return
    location = uv.telescope.location  # an EarthLocation: geocentric x, y, z
    xyz = np.array([c.to_value("m") for c in (location.x, location.y, location.z)])
    distance = float(np.linalg.norm(where - xyz))
    if distance > SITE_TOLERANCE_M:
        log.warning(
            "%s: CASA places the telescope %r %.0f km from the file's location: its antenna "
            "offsets and frame conversions on the MS will be wrong",
            path,
            name,
            distance / 1e3,
        )


def prepare_generic(uv, path: str, generic_phasing: str) -> FieldDirections | None:
    """Generic mode keeps the file's telescope, antennas and phase centres; unprojected data
    (which an MS cannot hold) are refused or phased as ``generic_phasing`` says. Returns where
    the dishes of unprojected data pointed (the meridian at :func:`meridian_dec`, the zenith
    unless the file says otherwise) or None for phased data (pyuvdata's POINTING is kept)."""
    warn_if_casa_misplaces(uv, path)
    unprojected = uv._check_for_cat_type("unprojected")
    if not unprojected.any():
        return None
    pointing = integration_meridians(uv, meridian_dec(uv))
    if generic_phasing == "first_zenith":
        phase_to_first_zenith(uv)
    elif generic_phasing == "meridian_per_integration" and unprojected.all():
        set_meridian_phase_centres(uv, meridian_dec(uv))
    elif generic_phasing == "meridian_per_integration":
        raise InputFileError(
            f"{path}: mixes unprojected and phased baseline-times; generic_phasing: "
            "meridian_per_integration needs all unprojected (first_zenith phases only those)"
        )
    else:
        raise InputFileError(
            f"{path}: unprojected (drift-scan) data, which generic mode converts only with "
            "generic_phasing: first_zenith (as pyuvdata's write_ms(force_phase=True)) or "
            "meridian_per_integration (a field per integration)"
        )
    return pointing


def prepare(
    uv,
    path: str,
    *,
    telescope: str,
    keep_autocorrelations: bool,
    generic_phasing: str = "refuse",
    ms_telescope_name: str = MS_TELESCOPE_NAME,
    phase_center: PhaseCenter = PER_INTEGRATION,
) -> FieldDirections | None:
    """Everything done to a subband before it is written, in place; returns where the dishes
    pointed at each integration, if known (for the MS's POINTING table).

    ``telescope``: "dsa110" applies the DSA-110 fix-ups; "generic" keeps the file's own
    telescope, antennas and phase centres (:func:`prepare_generic`). Both put channels in
    ascending frequency (an MS SPW must ascend; the correlator writes them descending).
    """
    if telescope == "dsa110":
        pointing = prepare_dsa110(uv, path, ms_telescope_name, phase_center)
    elif telescope == "generic":
        pointing = prepare_generic(uv, path, generic_phasing)
    else:
        raise ValueError(f"unknown telescope mode {telescope!r}")
    if not keep_autocorrelations:
        uv.select(ant_str="cross")
    uv.reorder_freqs(channel_order="freq")
    return pointing
