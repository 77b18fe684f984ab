"""CASA (casatools/casatasks) started offline, the only way the package imports it, and the
package's CASA measures directory (:func:`measures_overlay`).

``CASASITECONFIG`` must name the site config before casatools is first imported; importing
casatools through :func:`tools` guarantees that.

For CASA outside the package (a user's casatools, python-casacore, taql), ``python -m
dsa110ms.casa siteconfig`` prints the overlay's own site config (a file of literal values: any
CASA Python can use it without importing dsa110ms) and ``python -m dsa110ms.casa casarc`` the
``~/.casarc`` line for casacore::

    export CASASITECONFIG=$(python -m dsa110ms.casa siteconfig)
    python -m dsa110ms.casa casarc    # the line for ~/.casarc (replacing an earlier one)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import errno
import hashlib
import importlib.metadata
import os
import uuid
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from dsa110ms import telescope as tel
from dsa110ms.errors import CasaDataError, ScratchError, one_line_errors

SITE_CONFIG = Path(__file__).with_name("casasiteconfig.py")


def configure_environment(environ=os.environ) -> None:
    """Point CASA at the offline site config (absolute path, as casaconfig requires), after
    making sure the measures overlay it names exists (made here, before casatools is imported,
    so that the site config only finds it)."""
    environ.setdefault("CASASITECONFIG", str(SITE_CONFIG.resolve()))
    measures_overlay()


# --- the package's measures directory --------------------------------------------------------

#: Bumped whenever what the overlay holds changes (a new version is a new directory; overlays
#: of earlier formats are left as they are). 2: geodetic/Observatories knows DSA-110, and the
#: overlay holds its own site config (:data:`OVERLAY_SITE_CONFIG`).
OVERLAY_FORMAT = 2
OVERLAY_KIND = "CASA measures overlay"
#: The overlay's standalone CASA site config (literal values, no dsa110ms import), in it.
OVERLAY_SITE_CONFIG = "casasiteconfig.py"
#: casacore calls TAI_UTC "out-of-date" (SEVERE, in every CASA log) 180 days after its VS_DATE
#: (measured: a VS_DATE 181 days old is, one 179 days old is not), whatever the data's date.
CASACORE_TAI_UTC_MAX_AGE_DAYS = 180
#: First MJD of integer-second TAI-UTC (1972-01-01): the rows the leap-second file gives.
INTEGER_LEAP_SECONDS_FROM_MJD = 41317.0


def overlay_root(environ=os.environ) -> Path:
    """Where the overlays live: ``$DSA110MS_CASA_MEASURES_ROOT``, else this user's cache
    (``$XDG_CACHE_HOME`` or ``~/.cache``) ``/dsa110ms/casa-measures``."""
    if environ.get("DSA110MS_CASA_MEASURES_ROOT"):
        return Path(os.path.abspath(environ["DSA110MS_CASA_MEASURES_ROOT"]))
    from dsa110ms.paths import user_cache

    return Path(user_cache(environ)) / "casa-measures"


@cache
def overlay_name() -> str:
    """One overlay per casadata and astropy-iers-data version (and :data:`OVERLAY_FORMAT`) and
    per casadata installation (its links point into it: another environment of the same
    versions, whose removal would leave them dangling, makes its own): a refresh of the tables
    makes a new one; one never changes once made."""
    import casadata

    versions = {p: importlib.metadata.version(p) for p in ("casadata", "astropy-iers-data")}
    installed = os.path.realpath(casadata.datapath).encode("utf-8", "surrogateescape")
    where = hashlib.sha256(installed).hexdigest()[:8]
    return "_".join(f"{p}-{v}" for p, v in versions.items()) + f"_v{OVERLAY_FORMAT}_{where}"


def measures_overlay(environ=os.environ) -> Path:
    """The package's CASA measures directory (the site config's ``measurespath``): casadata's
    directories as symlinks, except the tables the package writes (:data:`OVERLAY_TABLES`):
    ``geodetic/TAI_UTC`` from astropy-iers-data's leap-second list (casadata 2025.9.22's is
    dated 2025-09-16, so CASA logs SEVERE "Leap second table TAI_UTC seems out-of-date" in every
    job once it is 180 days old, although no leap second has been added since 2017), and
    ``geodetic/Observatories`` knowing the name our MSs carry (``DSA_110``).

    If it cannot be made (no writable cache), casadata's own directory is used, and the reason
    and its consequence are logged."""
    try:
        return make_overlay(environ)
    except OVERLAY_ERRORS as exc:
        import logging

        import casadata

        logging.getLogger(__name__).warning(
            "CASA measures overlay not made in %s (%s): CASA uses casadata's own tables, which "
            "do not know the telescope DSA_110 (listobs fails on a DSA-110 MS; set "
            "DSA110MS_CASA_MEASURES_ROOT to a writable directory, or write the MSs with "
            "ms_telescope_name: OVRO-LWA)",
            overlay_root(environ),
            exc,
        )
        return Path(casadata.datapath)


def make_overlay(environ=os.environ) -> Path:
    """The overlay's absolute path, made if missing; raises OSError or ScratchError if it cannot
    be made.

    Made once per version pair, by whichever process needs it first: built under a private
    name, then renamed into place (atomic: a process sees none or all of it); a process that
    loses the race removes its own build."""
    import casadata

    from dsa110ms.owned import remove_abandoned, remove_owned

    root = overlay_root(environ)
    final = root / overlay_name()
    if os.path.lexists(final):
        check_overlay(final)
        return final
    remove_abandoned(root, lambda n: n.startswith(f".{final.name}.building-"), ABANDONED_BUILD_S)
    building = root / f".{final.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def remove_build() -> None:
        if os.path.lexists(building):
            with contextlib.suppress(*OVERLAY_ERRORS):
                remove_owned(building, root)

    try:
        build_overlay(building, Path(casadata.datapath), final)
    except BaseException:
        remove_build()
        raise
    try:
        os.rename(building, final)
    except OSError as exc:
        remove_build()
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        check_overlay(final)  # another process made it first
    return final


#: A build of an overlay older than this was abandoned (its process killed): removed.
ABANDONED_BUILD_S = 3600.0


def check_overlay(path: Path) -> None:
    """Refuse, naming it and the fix, what is at an overlay's path but is not a complete overlay
    of this package (an empty directory, a symlink, a file, links that no longer resolve)."""
    from dsa110ms.owned import owned_kind

    why = None
    if path.is_symlink() or not path.is_dir():
        why = "a symlink" if path.is_symlink() else "not a directory"
    elif owned_kind(path) != OVERLAY_KIND or not (path / OVERLAY_SITE_CONFIG).is_file():
        why = "not an overlay made by dsa110ms"
    elif dangling := [e.name for e in os.scandir(path) if not os.path.exists(e.path)]:
        why = f"links that no longer resolve ({', '.join(sorted(dangling)[:3])})"
    elif missing := [t for t in OVERLAY_TABLES if not (path / t / "table.dat").is_file()]:
        why = f"tables missing ({', '.join(missing)})"
    if why:
        raise CasaDataError(
            f"CASA measures overlay {path}: {why}; move it away, and a new one is made"
        )


def build_overlay(target: Path, casadata_dir: Path, final: Path | None = None) -> None:
    """casadata's tree at ``target`` as symlinks (directories whose contents are replaced are
    made real, recursively), then the replaced tables written, and the overlay's site config
    naming ``final`` (where ``target`` will be renamed to; default ``target``)."""
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
    write_site_config(target / OVERLAY_SITE_CONFIG, Path(os.path.abspath(final or target)))


def site_config_text(measures: Path) -> str:
    """A CASA site config with literal values: offline, measures from ``measures``."""
    return (
        '"""CASA site config written by dsa110ms: CASA\'s measures from the package\'s overlay\n'
        "of casadata (current leap seconds and Earth orientation; the observatory DSA_110).\n"
        "Use: export CASASITECONFIG=<this file> before CASA starts. Nothing is downloaded.\n"
        '"""\n\n'
        f"measurespath = {str(measures)!r}\n"
        "measures_auto_update = False\n"
        "data_auto_update = False\n"
    )


def write_site_config(path: Path, measures: Path) -> None:
    path.write_text(site_config_text(measures))
    path.chmod(0o644)


def casarc_line(measures: Path) -> str:
    """The ``~/.casarc`` line that points casacore (python-casacore, taql) at ``measures``."""
    return f"measures.directory: {measures}"


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


#: Names the overlay's Observatories table places at DSA-110's array reference: the name our
#: MSs carry, and the spelling people type.
OBSERVATORY_NAMES = (tel.MS_TELESCOPE_NAME, "DSA-110")
#: MJD of the rows (the table's MJD column: when a row was entered): 2026-12-02.
OBSERVATORY_ROW_MJD = 61376.0


def write_observatories(source: Path, target: Path) -> None:
    """casadata's Observatories with WGS84 rows for :data:`OBSERVATORY_NAMES` at the array
    reference of DSA-110's file writer (:mod:`dsa110ms.telescope`), in the units of casadata's
    rows (Long/Lat deg, Height m; X/Y/Z the ITRF position in m, as its OVRO-LWA row). Rows of
    these names casadata may have are replaced: the MS's positions are relative to this one.
    Without them listobs fails ("not recognized"), msmetadata can crash and cvel2 silently
    takes the observatory at the centre of the Earth (LSRK 0.66 kHz off)."""
    import numpy as np
    from casacore import tables
    from pyuvdata.utils import XYZ_from_LatLonAlt

    xyz = XYZ_from_LatLonAlt(
        np.radians(tel.LATITUDE_DEG), np.radians(tel.LONGITUDE_DEG), tel.ALTITUDE_M
    )
    copy_table(source, target)
    with tables.table(str(target), readonly=False, ack=False) as tb:
        names = tb.getcol("Name")
        tb.removerows([r for r, name in enumerate(names) if name in OBSERVATORY_NAMES])
        first = tb.nrows()
        tb.addrows(len(OBSERVATORY_NAMES))
        for i, name in enumerate(OBSERVATORY_NAMES, start=first):
            row = {
                "MJD": OBSERVATORY_ROW_MJD,
                "Name": name,
                "Type": "WGS84",
                "Long": tel.LONGITUDE_DEG,
                "Lat": tel.LATITUDE_DEG,
                "Height": tel.ALTITUDE_M,
                "X": float(xyz[0]),
                "Y": float(xyz[1]),
                "Z": float(xyz[2]),
                "Source": "DSA-110 array reference (dsa110-meridian-fs file writer)",
                "Comment": "written by dsa110ms",
                "AntennaResponses": "",
            }
            for column, value in row.items():
                if column in tb.colnames():
                    tb.putcell(column, i, value)


#: What making an overlay may raise that means "not here": the caller falls back or says so.
OVERLAY_ERRORS = (OSError, ScratchError, CasaDataError, UnicodeError, RuntimeError)

#: Tables of the overlay that the package writes (path in the measures directory -> writer of
#: the new table from casadata's); the rest is casadata's, linked.
OVERLAY_TABLES = {
    "geodetic/TAI_UTC": write_tai_utc,
    "geodetic/IERSpredict": write_iers_predict,
    "geodetic/Observatories": write_observatories,
}


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


def overlay_for_users(environ=os.environ) -> Path:
    """The overlay (made if missing), for CASA outside the package; one-line error if it
    cannot be made."""
    where = str(overlay_root(environ))
    if "\n" in where or "\r" in where:
        raise CasaDataError(
            f"CASA measures overlay root {where!r}: a path with a line break cannot be written "
            "in a site config or .casarc; set DSA110MS_CASA_MEASURES_ROOT to another directory"
        )
    try:
        return make_overlay(environ)
    except CasaDataError:
        raise
    except OVERLAY_ERRORS as exc:
        raise CasaDataError(
            f"CASA measures overlay cannot be made in {where} ({type(exc).__name__}: {exc}); "
            "set DSA110MS_CASA_MEASURES_ROOT to a writable directory"
        ) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dsa110ms.casa",
        description="The package's CASA measures overlay (casadata with current leap seconds "
        "and Earth orientation, and the observatory DSA_110), for CASA outside the package.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "siteconfig",
        help="print the path of a CASA site config using the overlay: "
        "export CASASITECONFIG=$(python -m dsa110ms.casa siteconfig)",
    )
    commands.add_parser(
        "casarc",
        help="print the ~/.casarc line pointing casacore (python-casacore, taql) at the overlay",
    )
    args = parser.parse_args(argv)
    with one_line_errors():
        overlay = overlay_for_users()
        if args.command == "siteconfig":
            print(overlay / OVERLAY_SITE_CONFIG)
        else:
            print(casarc_line(overlay))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
