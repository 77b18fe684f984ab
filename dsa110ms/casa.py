"""CASA (casatools/casatasks) started offline, the only way the package imports it.

``CASASITECONFIG`` must name the site config before casatools is first imported; importing
casatools through :func:`tools` guarantees that.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

SITE_CONFIG = Path(__file__).with_name("casasiteconfig.py")


def configure_environment(environ=os.environ) -> None:
    """Point CASA at the offline site config (absolute path, as casaconfig requires)."""
    environ.setdefault("CASASITECONFIG", str(SITE_CONFIG.resolve()))


def tools():
    """The casatools module, configured for offline use."""
    configure_environment()
    import casatools

    return casatools


def tasks():
    """The casatasks module, configured for offline use."""
    configure_environment()
    import casatasks

    return casatasks


def log_to(path: str | os.PathLike) -> None:
    """Send CASA's log messages to ``path`` (e.g. the job's log file)."""
    tools().logsink().setlogfile(str(path))
    tasks().casalog.setlogfile(str(path))


@contextmanager
def table(path: str | os.PathLike):
    """A casatools table open for reading, closed on exit."""
    tb = tools().table()
    tb.open(str(path))
    try:
        yield tb
    finally:
        tb.close()
