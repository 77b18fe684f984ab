"""Earth-rotation and leap-second tables, offline: what the bundled tables cover and what the
workflow does with data beyond them.

**Offline, in every process.** :func:`install` (run when :mod:`dsa110ms` is imported, so in the
main Snakemake process, every job, the streaming mode and every ``python -m dsa110ms...``)
configures astropy the moment its IERS module is imported, without importing it itself (that
costs ~0.3 s, which part jobs, which never use astropy, do not pay):

- ``iers.conf.auto_download = False``: the IERS-A table of the pinned ``astropy-iers-data``
  (``finals2000A.all``) and its leap-second file are used, never a download or a cached copy;
- ``iers.conf.auto_max_age = None``: no refusal of predictions by their age. astropy refuses
  predicted UT1-UTC once the table is 30 days old, although IERS Bulletin A's predictions hold
  for a year (below); it then tried to download and the template job failed, blaming the file;
- ``astropy.utils.data.conf.allow_internet = False``: any other download astropy might try
  fails at once instead of waiting on the network.

CASA's side (casadata, which cannot be refreshed as often) is :mod:`dsa110ms.casa`'s measures
overlay, whose leap-second table is written from the same leap-second file.

**Policy for data beyond the tables** (:func:`check_times`, called by the template job on the
times inside each file it reads, naming the file). The figures: DSA-110's longest baseline is
2.7 km, the top of its band 1.53 GHz (lambda 0.196 m), so its synthesized beam is lambda / B =
15 arcsec; 1 s of UT1 error turns the sky by 15 arcsec (73 microrad: 20 cm of UVW on 2.7 km).
We accept an Earth-orientation error up to 1/10 of the beam, 1.5 arcsec (18 mm of UVW on the
longest baseline, 0.09 wavelength at 1.53 GHz): the sky shifted by 1/10 of a beam, which a
calibrator in the field takes out; beyond that, astrometry and phases suffer.

- Before the IERS-A table starts (1973-01-02, the first day of ``finals2000A.all``, which
  is the table astropy's ``Time`` takes UT1-UTC and polar motion from: ``IERS_Auto``; the
  IERS-B file ``eopc04`` bundled beside it, from 1962, is not used by ``Time``): refused, one
  line naming the file, its time and the table's start. astropy does not refuse such times: it
  silently holds UT1-UTC at the table's first value (0.81 s in 1973; UTC before 1972 was
  not even kept within 0.9 s of UT1), a whole beam or more of error. Data dated so early are
  a correlator whose clock was reset (1970 is the Unix epoch), not an observation.
- Within the IERS-A table (measured values, then about one year of predictions): converted,
  silently. Bulletin A gives the prediction error of UT1-UTC as 0.00025 s x (days ahead)^0.75:
  0.021 s (0.32 arcsec, 4 mm on 2.7 km, 2 % of the beam) at the table's end.
- Beyond the leap-second file's expiry: converted, with a one-line warning. After the expiry a
  leap second could in principle have been announced that the file does not know (UTC, so UT1,
  off by 1 s: a whole beam). But IERS inserts a leap second only to keep |UT1-UTC| below 0.9 s,
  and the same table's predictions keep |UT1-UTC| within :attr:`Coverage.max_predicted_dut1_s`
  (0.26 s for the 2026-11 tables) up to their end, so no leap second can fall before then.
- Up to :data:`GRACE_DAYS` (30) days after the IERS-A table's end: converted, with a one-line
  warning. astropy holds UT1-UTC at its last predicted value, and polar motion at its 50-year
  mean (up to 0.3 arcsec off). Since 2017, UT1-UTC changed by at most 1.7 ms a day over 30
  days (the table's own measured values), so after 30 days the error is at most 0.021 + 0.051 s
  (1.07 arcsec) + 0.3 arcsec = 1.4 arcsec: within the 1.5 arcsec we accept.
- Later than that: refused, one line naming the file, its time, the table's end and
  ``make refresh-tables``; the error keeps growing, unannounced.

The one command that refreshes the tables is ``make refresh-tables`` (:data:`REFRESH_COMMAND`);
``make tables`` prints what the installed tables cover (:func:`describe`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.abc
import logging
import os
import re
import stat
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from dsa110ms.errors import InputFileError

log = logging.getLogger(__name__)

#: What the astronomer runs to refresh astropy-iers-data and casadata (and only them).
REFRESH_COMMAND = "make refresh-tables"

#: Modified Julian Date of the Unix epoch, and of JD 0 (JD = MJD + 2400000.5).
MJD_UNIX_EPOCH = 40587.0
JD_MINUS_MJD = 2400000.5

#: Days after the IERS-A table's end up to which data are converted with a warning (the
#: Earth-orientation error stays within 1/10 of DSA-110's beam; module docstring).
GRACE_DAYS = 30.0


# --- astropy, offline -------------------------------------------------------------------------


def configure_astropy_iers(iers) -> None:
    """Offline settings of ``astropy.utils.iers`` (the module); see the module docstring. The
    IERS-A table ``Time`` uses is read from this user's cache (:func:`read_iers_a_cached`)."""
    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    parse = iers.IERS_Auto.read.__func__

    def read(cls, file=None, readme=None):
        if file is None and readme is None and not os.path.exists("finals2000A.all"):
            return read_iers_a_cached(lambda: parse(cls), cls)
        return parse(cls, file, readme)  # what astropy reads otherwise (deprecated forms)

    iers.IERS_Auto.read = classmethod(read)


#: astropy parses the bundled IERS-A table (20,000 rows of fixed-width text) in ~0.45 s, in
#: every process that converts a time to UT1 or asks for polar motion (template and phase plan
#: jobs); its columns, kept as NumPy arrays in the user's cache, load in ~10 ms.
IERS_CACHE = "astropy-iers-a"
#: A cache file: the SHA-256 of the rest, then an ``.npz`` of the table's columns (no pickles).
DIGEST_BYTES = 32
#: A cache file being written by a process killed meanwhile is removed after this long.
ABANDONED_WRITE_S = 3600.0
#: The cache directory's marker kind (:mod:`dsa110ms.owned`): what is removed there is ours.
IERS_CACHE_KIND = "astropy IERS-A table cache"


def read_iers_a_cached(parse, cls):
    """The table ``parse()`` returns (an ``IERS_Auto``), from this user's cache when it holds
    the one of these astropy and astropy-iers-data versions, else parsed and cached.

    The cache is read and written only inside directories of this user's that nobody else may
    write (``<cache>/dsa110ms/astropy-iers-a``, opened one by one without following links, then
    used by descriptor: nothing can be swapped in between), from a regular file of theirs whose
    digest matches its contents. It holds arrays, never code (``allow_pickle=False``). Anything
    amiss: parsed, as astropy would, and nothing is written."""
    import importlib.metadata

    from dsa110ms.paths import user_cache

    versions = "-".join(importlib.metadata.version(p) for p in ("astropy", "astropy-iers-data"))
    name = f"IERS_A-{versions}.npz"
    directory = Path(user_cache()) / IERS_CACHE
    dir_fd = _private_cache_dir(directory)
    if dir_fd is None:
        return parse()
    try:
        table = _load_table(dir_fd, name, cls)
        if table is None:
            table = parse()
            _store_table(dir_fd, directory, name, table)
        return table
    finally:
        os.close(dir_fd)


def _private_cache_dir(directory: Path) -> int | None:
    """A descriptor of the cache ``directory`` (``<cache>/dsa110ms/astropy-iers-a``, made and
    marked as ours if missing), or None if it or its parent is not a directory of this user's
    that only they may write (both opened without following links, by descriptor)."""
    from dsa110ms.errors import ScratchError
    from dsa110ms.owned import DIR_FLAGS, make_owned_dir

    try:
        make_owned_dir(directory, IERS_CACHE_KIND)
        fd = os.open(directory.parent.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (OSError, ScratchError):
        return None
    for name in (directory.parent.name, directory.name):
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = child
        if not _private(os.fstat(fd)):
            os.close(fd)
            return None
    return fd


def _private(info: os.stat_result) -> bool:
    """This user's, and nobody else may write it."""
    return info.st_uid == os.getuid() and not info.st_mode & 0o022


def _load_table(dir_fd: int, name: str, cls):
    """The cached table ``name`` in the directory ``dir_fd``, or None."""
    import hashlib
    import io
    import json

    import numpy as np
    from astropy import units as u
    from astropy.table import MaskedColumn, QTable

    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or not _private(info):
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            content = f.read()
    finally:
        os.close(fd)
    digest, payload = content[:DIGEST_BYTES], content[DIGEST_BYTES:]
    if hashlib.sha256(payload).digest() != digest:
        return None
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as z:
            layout = json.loads(str(z["layout"]))
            columns = {}
            for column, unit in layout["units"].items():
                values = z[column]
                if f"{column}.mask" in z:
                    columns[column] = MaskedColumn(values, mask=z[f"{column}.mask"])
                else:
                    columns[column] = values * u.Unit(unit) if unit else values
            return cls(QTable(columns, meta=layout["meta"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store_table(dir_fd: int, directory: Path, name: str, table) -> None:
    """Write ``table``'s columns as the cache file ``name`` in ``directory``, open at
    ``dir_fd``: under a private name, then renamed (a reader sees all of it or none); abandoned
    writes removed."""
    import hashlib
    import io
    import json
    import uuid

    import numpy as np

    from dsa110ms.errors import ScratchError
    from dsa110ms.owned import remove_abandoned, remove_owned

    arrays, units = {}, {}
    for column in table.colnames:
        values = table[column]
        unit = getattr(values, "unit", None)
        units[column] = None if unit is None else str(unit)
        arrays[column] = np.asarray(values.value if unit is not None else values)
        if getattr(values, "mask", None) is not None and np.any(values.mask):
            arrays[f"{column}.mask"] = np.asarray(values.mask)
    meta = {k: v.item() if hasattr(v, "item") else v for k, v in table.meta.items()}
    arrays["layout"] = np.array(json.dumps({"units": units, "meta": meta}))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    writing = f".{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.writing"

    def abandoned(entry: str) -> bool:
        return entry.startswith(f".{name}.") and entry.endswith(".writing")

    try:
        remove_abandoned(directory, abandoned, ABANDONED_WRITE_S)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(writing, flags, 0o600, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as f:
            f.write(hashlib.sha256(payload).digest() + payload)
        os.rename(writing, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        log.debug("IERS-A table not cached: %s", exc)
        with contextlib.suppress(OSError, ScratchError):
            remove_owned(directory / writing, directory)


def configure_astropy_data(data) -> None:
    """No download by ``astropy.utils.data`` (the module): it fails at once."""
    data.conf.allow_internet = False


#: module name -> what to do once it is imported
_CONFIGURE = {
    "astropy.utils.data": configure_astropy_data,
    "astropy.utils.iers": configure_astropy_iers,
}


class _ConfigureAfterExec(importlib.abc.Loader):
    """A module's own loader, then its configuration (:data:`_CONFIGURE`)."""

    def __init__(self, loader, configure):
        self._loader = loader
        self._configure = configure

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._configure(module)

    def __getattr__(self, name):  # resource readers etc.: the real loader's
        return getattr(self._loader, name)


class _ConfigureOnImport(importlib.abc.MetaPathFinder):
    """Finds the modules of :data:`_CONFIGURE` as the other finders do, and configures them
    as soon as they are executed: before any code can use them."""

    def find_spec(self, name, path, target=None):
        if name not in _CONFIGURE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _ConfigureAfterExec(spec.loader, _CONFIGURE[name])
                return spec
        return None


def install() -> None:
    """Configure astropy offline in this process: now for the modules already imported, on
    import for the others. Idempotent; imports nothing of astropy."""
    for name, configure in _CONFIGURE.items():
        if name in sys.modules:
            configure(sys.modules[name])
    if not any(isinstance(f, _ConfigureOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _ConfigureOnImport())


# --- what the tables cover --------------------------------------------------------------------


def mjd_of(day: dt.date) -> float:
    """Modified Julian Date of a calendar day's 0h."""
    return float((day - dt.date(1970, 1, 1)).days + MJD_UNIX_EPOCH)


def date_of(mjd: float) -> str:
    """ISO date-time (UTC, seconds) of an MJD."""
    seconds = round((mjd - MJD_UNIX_EPOCH) * 86400.0)
    return (dt.datetime(1970, 1, 1) + dt.timedelta(seconds=seconds)).isoformat()


def observed_at(mjd: float) -> str:
    """:func:`date_of` for a time read from a file, which may be anything: a value no calendar
    date can show (NaN, infinite, beyond years 1-9999) is shown as the MJD it is."""
    try:
        return date_of(mjd)
    except (OverflowError, ValueError):
        return f"MJD {mjd!r}"


@dataclass(frozen=True)
class Coverage:
    """What the installed ``astropy-iers-data`` covers (MJD, UTC days)."""

    version: str  # astropy-iers-data's
    iers_a_file: str
    #: first day with UT1-UTC (astropy's ``Time`` knows nothing earlier)
    iers_a_start_mjd: float
    #: first day of predicted UT1-UTC, and the last day with a value at all
    predicted_from_mjd: float
    iers_a_end_mjd: float
    #: largest |UT1-UTC| (s) the predictions reach
    max_predicted_dut1_s: float
    leap_second_file: str
    leap_seconds_expire_mjd: float
    #: (MJD from which, TAI-UTC in s), oldest first
    leap_seconds: tuple[tuple[float, int], ...]

    @property
    def release(self) -> dt.datetime:
        """When the tables were released (UTC), from the version ``0.YYYY.M.D.h.m.s``."""
        return release_of(self.version)


def release_of(version: str) -> dt.datetime:
    """The release time (UTC) an astropy-iers-data version ``0.YYYY.M.D.h.m.s`` names."""
    parts = [int(p) for p in version.split(".")[1:7]]
    return dt.datetime(*parts, tzinfo=dt.UTC)


def _finals_lines(path: str):
    """(MJD, predicted, line) of each day of an IERS ``finals2000A`` file that has a UT1-UTC
    value (fixed columns: MJD bytes 8-15, UT1-UTC flag byte 58 ("P": predicted), UT1-UTC bytes
    59-68)."""
    with open(path) as f:
        for line in f:
            if line[58:68].strip():
                yield float(line[7:15]), line[57] == "P", line


def read_finals(path: str) -> tuple[float, float, float, float]:
    """(first day with UT1-UTC, first predicted day, last day with UT1-UTC, largest predicted
    |UT1-UTC| in s) of an IERS ``finals2000A`` file."""
    start, predicted_from, end, max_dut1 = None, None, None, 0.0
    for mjd, predicted, line in _finals_lines(path):
        start = mjd if start is None else start
        end = mjd
        if predicted:
            predicted_from = mjd if predicted_from is None else predicted_from
            max_dut1 = max(max_dut1, abs(float(line[58:68])))
    if end is None or predicted_from is None:
        raise ValueError(f"{path}: no predicted UT1-UTC")
    return start, predicted_from, end, max_dut1


def read_finals_rows(path: str, from_mjd: float) -> list[tuple[float, ...]]:
    """Daily rows (MJD; x, error, y, error in arcsec; UT1-UTC, error in s; LOD in s, 0 where
    the file gives none) of an IERS ``finals2000A`` file from ``from_mjd`` to its last UT1-UTC
    value (the Bulletin A columns: measured, then predicted)."""
    rows = []
    for mjd, _, line in _finals_lines(path):
        if mjd < from_mjd:
            continue
        polar = (line[18:27], line[27:36], line[37:46], line[46:55])
        dut1 = (line[58:68], line[68:78])
        lod_ms = float(line[79:86].strip() or 0.0)
        rows.append((mjd, *map(float, polar), *map(float, dut1), lod_ms / 1e3))
    return rows


def read_leap_seconds(path: str) -> tuple[float, tuple[tuple[float, int], ...]]:
    """(expiry MJD, leap seconds) of an IERS ``Leap_Second.dat`` file ("File expires on 28 June
    2027"; rows "MJD day month year TAI-UTC")."""
    text = Path(path).read_text()
    found = re.search(r"File expires on\s+(\d+)\s+(\w+)\s+(\d{4})", text)
    if found is None:
        raise ValueError(f"{path}: no 'File expires on' line")
    expires = mjd_of(dt.datetime.strptime(" ".join(found.groups()), "%d %B %Y").date())
    rows = tuple(
        (float(mjd), int(tai_utc))
        for mjd, tai_utc in re.findall(r"^\s*(\d+\.\d*)\s+\d+\s+\d+\s+\d+\s+(\d+)", text, re.M)
    )
    return expires, rows


@cache
def coverage() -> Coverage:
    """What the installed astropy-iers-data covers (read once per process, ~50 ms)."""
    import importlib.metadata

    import astropy_iers_data as data

    start, predicted_from, end, max_dut1 = read_finals(data.IERS_A_FILE)
    expires, rows = read_leap_seconds(data.IERS_LEAP_SECOND_FILE)
    return Coverage(
        version=importlib.metadata.version("astropy-iers-data"),
        iers_a_file=data.IERS_A_FILE,
        iers_a_start_mjd=start,
        predicted_from_mjd=predicted_from,
        iers_a_end_mjd=end,
        max_predicted_dut1_s=max_dut1,
        leap_second_file=data.IERS_LEAP_SECOND_FILE,
        leap_seconds_expire_mjd=expires,
        leap_seconds=rows,
    )


# --- the policy -------------------------------------------------------------------------------


def check_times(path: str, times_jd) -> None:
    """Refuse (:class:`InputFileError`, one line naming the file) data observed before the
    IERS-A table starts or more than :data:`GRACE_DAYS` after its end; warn (one line) for
    data after the table's end or the leap-second file's expiry. Policy and numbers: module
    docstring. ``times_jd``: the file's times, JD (UTC)."""
    import numpy as np

    times = np.asarray(times_jd, dtype=float)
    if times.size == 0:
        return
    first = float(times.min()) - JD_MINUS_MJD
    last = float(times.max()) - JD_MINUS_MJD
    tables = coverage()
    end = date_of(tables.iers_a_end_mjd)[:10]
    if not first >= tables.iers_a_start_mjd:  # also NaN
        raise InputFileError(
            f"{path}: observed {observed_at(first)} UTC, before the "
            f"Earth-rotation tables start ({date_of(tables.iers_a_start_mjd)[:10]}): UT1-UTC "
            f"unknown, so LSTs and UVW would be wrong (a correlator clock that was reset?)"
        )
    if last > tables.iers_a_end_mjd + GRACE_DAYS:
        raise InputFileError(
            f"{path}: observed {observed_at(last)} UTC, over {GRACE_DAYS:.0f} days after the "
            f"Earth-rotation tables end ({end}): run {REFRESH_COMMAND} and convert again "
            f"(astropy-iers-data {tables.version}; UT1-UTC unknown, so LSTs and UVW would be wrong)"
        )
    if last > tables.iers_a_end_mjd:
        beyond = f"after the bundled Earth-rotation predictions end ({end})"
        why = f"UT1-UTC is held at its last value, within {GRACE_DAYS:.0f} days of it"
    elif last > tables.leap_seconds_expire_mjd:
        beyond = (
            f"after the bundled leap-second list expires "
            f"({date_of(tables.leap_seconds_expire_mjd)[:10]})"
        )
        why = (
            f"the Earth-rotation predictions (to {end}, |UT1-UTC| <= "
            f"{tables.max_predicted_dut1_s:.2f} s) leave no room for a leap second"
        )
    else:
        return
    log.warning(
        "%s: observed %s UTC, %s (astropy-iers-data %s); converted, accurate enough since %s; "
        "%s to refresh",
        path,
        date_of(last),
        beyond,
        tables.version,
        why,
        REFRESH_COMMAND,
    )


def describe() -> str:
    """What the installed tables cover, one line each (``make tables``)."""
    tables = coverage()
    return "\n".join(
        [
            f"astropy-iers-data {tables.version} (released {tables.release:%Y-%m-%d})",
            f"  IERS-A {tables.iers_a_file}: UT1-UTC measured from "
            f"{date_of(tables.iers_a_start_mjd)[:10]} (data before that are refused) to "
            f"{date_of(tables.predicted_from_mjd - 1)[:10]}, predicted to "
            f"{date_of(tables.iers_a_end_mjd)[:10]} (|UT1-UTC| <= "
            f"{tables.max_predicted_dut1_s:.2f} s); data after that get a warning, data more "
            f"than {GRACE_DAYS:.0f} days after that are refused",
            f"  leap seconds {tables.leap_second_file}: TAI-UTC = {tables.leap_seconds[-1][1]} s "
            f"since {date_of(tables.leap_seconds[-1][0])[:10]}, expires "
            f"{date_of(tables.leap_seconds_expire_mjd)[:10]}; data after that get a warning",
            f"refresh: {REFRESH_COMMAND}",
        ]
    )
