"""File names the rules and the jobs must agree on, in one place.

The rules use them with wildcards as Snakemake patterns; a part job computes its own paths from
the same functions (:func:`dsa110ms.run.jobs.part_command`), so that no path is written into its
shell command.
"""

from __future__ import annotations

import os


def input_file(input_dir: str, filetime: str, subband: str) -> str:
    """A subband file: ``<input_dir>/<filetime>_sb<subband>.hdf5`` (subband two digits)."""
    return os.path.join(input_dir, f"{filetime}_sb{subband}.hdf5")


def part_log(log_dir: str, group: str, subband: str, filetime: str) -> str:
    """A part job's log: ``<log_dir>/<group>/part_sb<subband>_<filetime>.log``."""
    return os.path.join(log_dir, group, f"part_sb{subband}_{filetime}.log")


def user_cache(environ=os.environ) -> str:
    """This user's cache directory for the package: ``$XDG_CACHE_HOME`` (if absolute, as the
    XDG spec says) or ``~/.cache``, then ``dsa110ms``."""
    cache = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(cache):
        cache = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(cache), "dsa110ms")
