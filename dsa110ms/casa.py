"""CASA (casatools/casatasks) started offline, the only way the package imports it.

``CASASITECONFIG`` must name the site config before casatools is first imported; importing
casatools through :func:`tools` guarantees that.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from dsa110ms.errors import CasaDataError

SITE_CONFIG = Path(__file__).with_name("casasiteconfig.py")


def configure_environment(environ=os.environ) -> None:
    """Point CASA at the offline site config (absolute path, as casaconfig requires)."""
    environ.setdefault("CASASITECONFIG", str(SITE_CONFIG.resolve()))


def measures_path(environ=os.environ) -> tuple[str, str]:
    """CASA's data directory as the active site config sets it (``measurespath``), and the
    config's path."""
    config = environ.get("CASASITECONFIG") or str(SITE_CONFIG.resolve())
    namespace: dict = {}
    try:
        exec(compile(Path(config).read_text(), config, "exec"), namespace)  # as casaconfig does
    except Exception as exc:  # noqa: BLE001 - any failure is reported as the site config's
        raise CasaDataError(f"CASA site config {config} cannot be read: {exc}") from None
    return str(namespace.get("measurespath", "")), config


def check_data(environ=os.environ) -> None:
    """Fail, naming the path and the fix, if CASA's data (measures: geodetic, ephemerides) is
    not where the site config says; CASA itself would fail in the first job, obscurely."""
    path, config = measures_path(environ)
    if not path or not (Path(path) / "geodetic").is_dir():
        raise CasaDataError(
            f"CASA data not found: measurespath {path or '(unset)'} (set in {config}) has no "
            "geodetic/ directory; install the pinned casadata (make venv, or pip install "
            "casadata) or point CASASITECONFIG at a site config whose measurespath holds it"
        )


def observatory_position(name: str, environ=os.environ):
    """Where CASA places the observatory ``name`` (ITRF x, y, z in metres), read from its
    Observatories table (casadata) as CASA reads it, or None if CASA does not know the name.

    CASA takes (Long, Lat, Height) as geodetic for a WGS84 row but as spherical for an ITRF row,
    Height being the distance from the Earth's centre: which puts "OVRO_MMA" (ITRF, 1188 m) at
    the centre of the Earth."""
    import numpy as np
    from casacore import tables

    path = Path(measures_path(environ)[0]) / "geodetic" / "Observatories"
    with tables.table(str(path), ack=False) as tb:
        rows = [r for r in range(tb.nrows()) if tb.getcell("Name", r) == name]
        if not rows:
            return None
        kind, lon, lat, height = (tb.getcell(c, rows[0]) for c in ("Type", "Long", "Lat", "Height"))
    lon, lat = np.radians(lon), np.radians(lat)
    if kind == "WGS84":
        from pyuvdata.utils import XYZ_from_LatLonAlt

        return XYZ_from_LatLonAlt(lat, lon, height)
    return height * np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


_log_path: str | None = None
#: module name -> log path already given to it
_logging_to: dict[str, str] = {}


def tools():
    """The casatools module, configured for offline use."""
    configure_environment()
    import casatools

    if _log_path and _logging_to.get("casatools") != _log_path:
        casatools.logsink().setlogfile(_log_path)
        _logging_to["casatools"] = _log_path
    return casatools


def tasks():
    """The casatasks module, configured for offline use."""
    tools()
    import casatasks

    if _log_path and _logging_to.get("casatasks") != _log_path:
        casatasks.casalog.setlogfile(_log_path)
        _logging_to["casatasks"] = _log_path
    return casatasks


def log_to(path: str | os.PathLike) -> None:
    """Send CASA's log messages to ``path`` (e.g. the job's log file) once CASA is used;
    importing CASA costs ~2 s, which a job that never calls it does not pay."""
    global _log_path
    _log_path = str(path)


@contextmanager
def table(path: str | os.PathLike):
    """A casatools table open for reading, closed on exit."""
    tb = tools().table()
    tb.open(str(path))
    try:
        yield tb
    finally:
        tb.close()
