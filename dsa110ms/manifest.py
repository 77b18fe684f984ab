"""The groups a run converts, as discovery decided them (:func:`dsa110ms.groups.discover`).

A :class:`Manifest` is written once per run by the main Snakemake process
(``.dsa110ms/manifest.json`` in the working directory) and read by every other process of the
run, so all of them see the same groups; :class:`Skipped` records what was left out, and why.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from dsa110ms.errors import DiscoveryError
from dsa110ms.files import write_text_atomically
from dsa110ms.telescope import N_SUBBANDS


@dataclass
class Group:
    """Files of one observation; ``id`` is when its data start (UTC, to the second: see
    :mod:`dsa110ms.groups`), and every file's name is within tolerance of it."""

    id: str
    files: dict[int, str]  # subband -> path

    @property
    def missing_subbands(self) -> list[int]:
        return [sb for sb in range(N_SUBBANDS) if sb not in self.files]

    def subbands_ascending_frequency(self) -> list[int]:
        """Subbands present, lowest frequency first (sb15 first): the SPW order of the MS."""
        return sorted(self.files, reverse=True)


def one_line(text: str) -> str:
    """``text`` as one printable line: characters that are not printable (a newline in a file's
    name, a byte of it that is not UTF-8, kept by Python as a surrogate) written as Python
    escapes (``\\n``, ``\\udcff``), so that a name can neither split the line nor fail to print."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Skipped(str):
    """What discovery left out, and why: ``subject`` (a file's path, or ``group <id>``),
    ``detail`` (the reason, and what to do) and ``group`` (the group it concerns, if known).
    As a string it is the line people read, ``<subject>: <detail>`` (:func:`one_line`); code
    reads the fields."""

    subject: str
    detail: str
    group: str | None

    def __new__(cls, subject: str, detail: str, group: str | None = None) -> Skipped:
        detail = one_line(detail)  # text only (a symlink's target...); the subject is a path
        self = super().__new__(cls, one_line(f"{subject}: {detail}"))
        self.subject, self.detail, self.group = subject, detail, group
        return self

    @classmethod
    def group_of(cls, gid: str, detail: str) -> Skipped:
        return cls(f"group {gid}", detail, gid)

    def record(self) -> dict:
        return {"subject": self.subject, "detail": self.detail, "group": self.group}


@dataclass
class Manifest:
    """The groups a run converts and what discovery decided about everything else."""

    input_dir: str
    groups: dict[str, Group] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    #: why there is no group to convert, and what to do (None if there are groups)
    empty_reason: str | None = field(default=None, compare=False)

    def to_json(self) -> str:
        return json.dumps(
            {
                "input_dir": self.input_dir,
                "groups": {g.id: {f"{sb:02d}": p for sb, p in g.files.items()} for g in self},
                "skipped": [skip.record() for skip in self.skipped],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        d = json.loads(text)
        groups = {
            gid: Group(gid, {int(sb): p for sb, p in files.items()})
            for gid, files in d["groups"].items()
        }
        return cls(d["input_dir"], groups, [Skipped(**r) for r in d["skipped"]])

    def __iter__(self):
        return iter(self.groups[g] for g in sorted(self.groups))

    def __len__(self) -> int:
        return len(self.groups)

    def write(self, path: str | os.PathLike) -> None:
        """Write atomically, so a reader never sees half a manifest. DiscoveryError naming the
        path and the reason if it cannot be written (a directory without write permission, a
        file where the directory should be, a full disk)."""
        try:
            write_text_atomically(path, self.to_json())
        except OSError as exc:
            where = Path(os.path.abspath(path))
            raise DiscoveryError(
                f"{where}: the run's group manifest cannot be written ({exc.strerror or exc}); "
                f"make {where.parent} a writable directory"
            ) from None

    @classmethod
    def read(cls, path: str | os.PathLike) -> Manifest:
        try:
            return cls.from_json(Path(path).read_text())
        except FileNotFoundError:
            raise DiscoveryError(
                f"{path}: group manifest missing; it is written by the main Snakemake process"
            ) from None
        except OSError as exc:
            raise DiscoveryError(
                f"{path}: group manifest cannot be read ({exc.strerror or exc})"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
            raise DiscoveryError(
                f"{path}: group manifest is not one the main Snakemake process wrote "
                f"({type(exc).__name__}: {exc}); start the run again"
            ) from None
