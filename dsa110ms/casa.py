"""CASA (casatools/casatasks) started offline, the only way the package imports it, and the
package's CASA measures directory (:func:`measures_overlay`).

``CASASITECONFIG`` must name the site config before casatools is first imported; importing
casatools through :func:`tools` guarantees that.
"""

from __future__ import annotations

import datetime as dt
import errno
import importlib.metadata
import os
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from dsa110ms.errors import CasaDataError, ScratchError

SITE_CONFIG = Path(__file__).with_name("casasiteconfig.py")


def configure_environment(environ=os.environ) -> None:
    """Point CASA at the offline site config (absolute path, as casaconfig requires), after
    making sure the measures overlay it names exists (made here, before casatools is imported,
    so that the site config only finds it)."""
    environ.setdefault("CASASITECONFIG", str(SITE_CONFIG.resolve()))
    measures_overlay()


# --- the package's measures directory --------------------------------------------------------

#: Bumped whenever what the overlay holds changes (a new version is a new directory).
OVERLAY_FORMAT = 1
OVERLAY_KIND = "CASA measures overlay"
#: casacore calls TAI_UTC "out-of-date" (SEVERE, in every CASA log) 180 days after its VS_DATE
#: (measured: a VS_DATE 181 days old is, one 179 days old is not), whatever the data's date.
CASACORE_TAI_UTC_MAX_AGE_DAYS = 180
#: First MJD of integer-second TAI-UTC (1972-01-01): the rows the leap-second file gives.
INTEGER_LEAP_SECONDS_FROM_MJD = 41317.0


def overlay_root(environ=os.environ) -> Path:
    """Where the overlays live: ``$DSA110MS_CASA_MEASURES_ROOT``, else this user's cache
    (``$XDG_CACHE_HOME`` or ``~/.cache``) ``/dsa110ms/casa-measures``."""
    if environ.get("DSA110MS_CASA_MEASURES_ROOT"):
        return Path(environ["DSA110MS_CASA_MEASURES_ROOT"])
    cache = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "dsa110ms" / "casa-measures"


@cache
def overlay_name() -> str:
    """One overlay per casadata and astropy-iers-data version (and :data:`OVERLAY_FORMAT`): a
    refresh of the tables makes a new one; one never changes once made."""
    versions = {p: importlib.metadata.version(p) for p in ("casadata", "astropy-iers-data")}
    return "_".join(f"{p}-{v}" for p, v in versions.items()) + f"_v{OVERLAY_FORMAT}"


def measures_overlay(environ=os.environ) -> Path:
    """The package's CASA measures directory (the site config's ``measurespath``): casadata's
    directories as symlinks, except the tables the package writes (:data:`OVERLAY_TABLES`):
    ``geodetic/TAI_UTC`` from astropy-iers-data's leap-second list (casadata 2025.9.22's is
    dated 2025-09-16, so CASA logs SEVERE "Leap second table TAI_UTC seems out-of-date" in every
    job once it is 180 days old, although no leap second has been added since 2017).

    Made once per version pair, by whichever process needs it first: built under a private
    name, then renamed into place (atomic: a process sees none or all of it); a process that
    loses the race removes its own build. If it cannot be made (no writable cache), casadata's
    own directory is used, as before, and the reason is logged."""
    import casadata

    root = overlay_root(environ)
    final = root / overlay_name()
    if final.is_dir():
        return final
    building = root / f".{final.name}.building-{os.getpid()}"
    try:
        build_overlay(building, Path(casadata.datapath))
        try:
            os.rename(building, final)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            from dsa110ms.owned import remove_owned  # another process made it first

            remove_owned(building, root)
    except (OSError, ScratchError) as exc:
        import logging

        logging.getLogger(__name__).warning(
            "CASA measures overlay not made in %s (%s): CASA uses casadata's own tables",
            root,
            exc,
        )
        return Path(casadata.datapath)
    return final


def build_overlay(target: Path, casadata_dir: Path) -> None:
    """casadata's tree at ``target`` as symlinks (directories whose contents are replaced are
    made real, recursively), then the replaced tables written."""
    from dsa110ms.owned import make_owned_dir

    make_owned_dir(target, OVERLAY_KIND)
    replaced = set(OVERLAY_TABLES)

    def link(src: Path, dst: Path, rel: str) -> None:
        for entry in sorted(os.listdir(src)):
            path = f"{rel}{entry}"
            if path in replaced:
                continue
            if any(r.startswith(path + "/") for r in replaced):
                os.mkdir(dst / entry, 0o755)
                link(src / entry, dst / entry, path + "/")
            else:
                os.symlink(src / entry, dst / entry)

    link(casadata_dir, target, "")
    for rel, write in OVERLAY_TABLES.items():
        write(casadata_dir / rel, target / rel)


def copy_table(source: Path, target: Path) -> None:
    """A copy of the casacore table at ``source`` at ``target``, made value by value in this
    process: without ``valuecopy``, casacore copies the files with ``cp -r`` through a shell
    (measured), and no path is ever given to a shell."""
    from casacore import tables

    with tables.table(str(source), ack=False) as tb:
        tb.copy(str(target), deep=True, valuecopy=True)


def write_tai_utc(source: Path, target: Path) -> None:
    """casadata's TAI_UTC with its integer-second rows (1972 on) and its date from the
    leap-second file of astropy-iers-data (:func:`dsa110ms.timetables.coverage`).

    VS_DATE is the file's expiry minus :data:`CASACORE_TAI_UTC_MAX_AGE_DAYS`, so that CASA
    calls the table out-of-date exactly when the list expires (the list is checked up to its
    expiry, not only up to its issue date)."""
    from casacore import tables

    from dsa110ms import timetables

    leap = timetables.coverage()
    copy_table(source, target)
    with tables.table(str(target), readonly=False, ack=False) as tb:
        mjd = tb.getcol("MJD")
        tb.removerows([int(r) for r in range(len(mjd)) if mjd[r] >= INTEGER_LEAP_SECONDS_FROM_MJD])
        first = tb.nrows()
        tb.addrows(len(leap.leap_seconds))
        for i, (day, tai_utc) in enumerate(leap.leap_seconds, start=first):
            tb.putcell("MJD", i, day)
            tb.putcell("dUTC", i, float(tai_utc))
            tb.putcell("Offset", i, INTEGER_LEAP_SECONDS_FROM_MJD)
            tb.putcell("Multiplier", i, 0.0)
        expires = dt.datetime.fromisoformat(timetables.date_of(leap.leap_seconds_expire_mjd))
        dated = expires - dt.timedelta(days=CASACORE_TAI_UTC_MAX_AGE_DAYS)
        tb.putkeyword("VS_DATE", dated.strftime("%Y/%m/%d/%H:%M"))
        tb.putkeyword(
            "VS_TYPE",
            f"TAI_UTC difference from IERS Leap_Second.dat (astropy-iers-data {leap.version}, "
            f"expires {expires:%Y-%m-%d}), written by dsa110ms",
        )


def write_iers_predict(source: Path, target: Path) -> None:
    """casadata's IERSpredict (Earth orientation for dates after its IERSeop2000) with the rows
    of astropy-iers-data's IERS-A table (Bulletin A: measured, then a year of predictions) from
    casadata's first day on. casadata 2025.9.22's ends 2025-12-20: CASA took UT1-UTC as 0 for
    any later date (0.09 s off in late 2026), logging "outside the range of the IERS table"."""
    import numpy as np
    from casacore import tables

    from dsa110ms import timetables

    tables_now = timetables.coverage()
    copy_table(source, target)
    with tables.table(str(target), ack=False) as tb:
        first = float(tb.getcol("MJD")[0])
    rows = np.array(timetables.read_finals_rows(tables_now.iers_a_file, first))
    if not np.array_equal(rows[:, 0], first + np.arange(len(rows))):
        raise CasaDataError(f"{tables_now.iers_a_file}: not one row per day from MJD {first}")
    columns = ("MJD", "x", "Dx", "y", "Dy", "dUT1", "DdUT1", "LOD")
    with tables.table(str(target), readonly=False, ack=False) as tb:
        tb.removerows(list(range(tb.nrows())))
        tb.addrows(len(rows))
        for name in tb.colnames():  # dPsi, dEps and errors the file has not: 0, as casadata's
            tb.putcol(name, np.zeros(len(rows)))
        for i, name in enumerate(columns):
            tb.putcol(name, rows[:, i])
        tb.putkeyword("MJD0", first - 1.0)
        tb.putkeyword("VS_DATE", f"{tables_now.release:%Y/%m/%d/%H:%M}")
        tb.putkeyword(
            "VS_TYPE",
            f"IERS Earth Orientation Data, Bulletin A finals2000A (astropy-iers-data "
            f"{tables_now.version}), written by dsa110ms",
        )


#: Tables of the overlay that the package writes (path in the measures directory -> writer of
#: the new table from casadata's); the rest is casadata's, linked.
OVERLAY_TABLES = {"geodetic/TAI_UTC": write_tai_utc, "geodetic/IERSpredict": write_iers_predict}


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
        sink = casatools.logsink()
        # the global sink, off the console: else CASA's C++ tools (msmetadata's "Performing
        # internal consistency checks" INFO) print to the terminal besides the job's log
        sink.setglobal(True)
        sink.setlogfile(_log_path)
        sink.showconsole(False)
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
