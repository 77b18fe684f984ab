"""One exception type per kind of failure a user can act on; messages name the file and reason.
:func:`one_line_errors` turns one into the line a person sees, ``dsa110ms: error: <reason>``."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import NoReturn


class Dsa110msError(Exception):
    """Base class: anything the workflow reports as a one-line reason."""


class ConfigError(Dsa110msError):
    """The configuration does not match dsa110ms/schema.yaml."""


class CasaDataError(Dsa110msError):
    """CASA's data (measures) cannot be found where its site config says."""


class DiscoveryError(Dsa110msError):
    """The input directory or its file names cannot be turned into groups."""


class InputFileError(Dsa110msError):
    """A subband file cannot be read or is not a DSA-110 / UVH5 file as expected."""


class UnwrittenDataError(InputFileError):
    """A subband file holds storage its writer never wrote (the correlator stopped part-way):
    HDF5 would read its fill value (zeros, unflagged) as data, so the file is refused."""


class CorruptDataError(InputFileError):
    """A subband file's stored bytes fail their checksum or decompression (a bit flip, a bad
    copy): the file is refused, naming the dataset and chunk."""


class OutputError(Dsa110msError):
    """The output directory cannot be written."""


class ScratchError(Dsa110msError):
    """Scratch space cannot be created, locked or removed."""


class JoinError(Dsa110msError):
    """Joining the parts of a group failed for a reason a retry cannot fix (a corrupt or
    inconsistent part, an output that cannot be published). Not retried."""


class TransientJoinError(JoinError):
    """Joining failed in a way a fresh attempt can fix (CASA table locks, I/O races): retried
    from a clean staging path."""


class ValidationError(Dsa110msError):
    """A joined Measurement Set is not what the parts promise; it is not published."""


def exit_with(error: Dsa110msError) -> NoReturn:
    """End Snakemake with the error's one line (it names the file or key and what to do)
    instead of a traceback."""
    print(f"dsa110ms: error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(1)


@contextmanager
def one_line_errors():
    """Around Snakefile code: a :class:`Dsa110msError` ends the run with its line."""
    try:
        yield
    except Dsa110msError as exc:
        exit_with(exc)
