"""Scratch sized from the data, not the files (issue 19 C.4-C.5 under compression), and the
inventory cache that holds the data's shapes never trusted blindly (a bad row is a miss, an
unreadable cache is set aside and rebuilt, an old layout is rebuilt)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import h5py

from dsa110ms import space
from dsa110ms.groups import discover
from dsa110ms.inventory import SCHEMA_VERSION, DataShape, Inventory, read_header
from dsa110ms.run import scratch

from .test_robustness import small_groups

TINY = {"n_antennas": 6, "n_integrations": 2}


def compress(path: Path) -> None:
    """Rewrite a file's data as a correlator with gzip would: zeros (as a flagged or idle
    subband), gzip-compressed, so the file is a fraction of what it holds."""
    packed = path.with_suffix(".packed")
    with h5py.File(path, "r") as f, h5py.File(packed, "w") as g:
        f.copy("Header", g)
        for name, ds in f["Data"].items():
            g.create_dataset(
                f"Data/{name}", data=ds[()] * 0, chunks=True, compression="gzip", compression_opts=9
            )
    packed.replace(path)


def test_scratch_is_sized_from_the_data_not_the_compressed_file(tmp_path):
    """A gzip file a tenth of its data's size: the part and template it makes fit in what the
    group asks for (with the file's size, the part needed ~10x what was reserved)."""
    from dsa110ms.ms.part import write_part

    small_groups(tmp_path / "in", 1, subbands=(0,), n_antennas=12, n_integrations=4)
    (path,) = (tmp_path / "in").glob("*.hdf5")
    compress(path)
    header, _ = read_header(str(path))
    assert header.shape == DataShape(nblts=312, nfreqs=48, npols=2, ntimes=4)
    part = write_part(path, tmp_path / "p" / "x.part")
    written = sum(p.stat().st_blocks * 512 for p in part.iterdir())
    assert path.stat().st_size * 5 < written  # the file says little of what it holds
    reserved = space.part_bytes(path, header.shape)
    assert written <= reserved <= written * 1.3
    group = scratch.group_scratch_bytes([str(path)], str(path))
    assert group == reserved + space.template_bytes(path) and group > 2 * written


def cache_rows(cache: Path) -> list[tuple]:
    with sqlite3.connect(cache) as db:
        return db.execute("SELECT * FROM file_header").fetchall()


def test_a_row_not_as_written_is_a_miss_and_an_old_layout_is_rebuilt(tmp_path):
    """time_jd='abc' gave a TypeError traceback on every run. A row whose values are not what
    the code writes is read again from the file (and replaced); a cache of the layout before
    versions (first_integration, no shapes) is rebuilt, never misread."""
    small_groups(tmp_path / "in", 1, **TINY)
    cache = tmp_path / "work" / "inventory.sqlite"
    (g,) = discover(tmp_path / "in", incomplete_groups="convert", inventory=cache)
    truth = read_header(g.files[0])[0]
    # the same layout without STRICT (as a hand edit or another tool could leave it), one row bad
    rows = cache_rows(cache)
    cache.unlink()
    with sqlite3.connect(cache) as db:
        db.execute(
            "CREATE TABLE file_header (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns "
            "INTEGER NOT NULL, inode INTEGER NOT NULL, time_jd REAL NOT NULL, integration_s REAL "
            "NOT NULL, nblts INTEGER, nfreqs INTEGER, npols INTEGER, ntimes INTEGER)"
        )
        db.executemany("INSERT INTO file_header VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        db.execute("UPDATE file_header SET time_jd = 'abc' WHERE path = ?", (g.files[0],))
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    inventory = Inventory(cache)
    assert inventory.header(g.files[0]) == truth
    inventory.save()
    assert (g.files[0], *[v for v in cache_rows(cache) if v[0] == g.files[0]][0][1:]) in [
        tuple(r) for r in cache_rows(cache)
    ]
    assert all(type(r[4]) is float for r in cache_rows(cache))
    (again,) = discover(tmp_path / "in", incomplete_groups="convert", inventory=cache)
    assert again.id == g.id
    # the layout before versions: rebuilt with this version's table
    cache.unlink()
    with sqlite3.connect(cache) as db:
        db.execute(
            "CREATE TABLE first_integration (path TEXT PRIMARY KEY, size INTEGER, mtime_ns "
            "INTEGER, inode INTEGER, time_jd REAL, integration_s REAL)"
        )
        db.execute("INSERT INTO first_integration VALUES (?, 1, 2, 3, 'abc', 4)", (g.files[0],))
    (again,) = discover(tmp_path / "in", incomplete_groups="convert", inventory=cache)
    assert again.id == g.id and len(cache_rows(cache)) == len(g.files)
    with sqlite3.connect(cache) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_an_unreadable_cache_is_set_aside_in_one_line_and_rebuilt(tmp_path, caplog):
    """A garbage inventory.sqlite said "cannot be used (file is not a database)" on every run
    and was never rebuilt. It is renamed aside (never deleted), said in one line, and rebuilt;
    the next discovery uses the new cache without a word."""
    small_groups(tmp_path / "in", 1, **TINY)
    cache = tmp_path / "work" / "inventory.sqlite"
    cache.parent.mkdir()
    garbage = b"this is not SQLite" * 100
    cache.write_bytes(garbage)
    caplog.set_level(logging.WARNING, logger="dsa110ms.inventory")
    (g,) = discover(tmp_path / "in", incomplete_groups="convert", inventory=cache)
    (record,) = [r for r in caplog.records if r.name == "dsa110ms.inventory"]
    (aside,) = cache.parent.glob("inventory.sqlite.broken-*")
    assert aside.read_bytes() == garbage
    message = record.getMessage()
    assert "\n" not in message and f"set aside as {aside.name} and rebuilt" in message
    assert len(cache_rows(cache)) == len(g.files)
    caplog.clear()
    (again,) = discover(tmp_path / "in", incomplete_groups="convert", inventory=cache)
    assert again.id == g.id
    assert [r for r in caplog.records if r.name == "dsa110ms.inventory"] == []
    # what is not a file (a directory, a link) is never renamed: it is not the cache's to move
    link = tmp_path / "work" / "link.sqlite"
    link.symlink_to(aside)
    discover(tmp_path / "in", incomplete_groups="convert", inventory=link)
    assert link.is_symlink() and aside.read_bytes() == garbage
