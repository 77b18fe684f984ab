"""Input files that change or arrive after their group was published (issue 19 B.2): a re-sent
subband, a late ``*_incomplete.hdf5`` renamed after ``incomplete_groups: convert`` published the
group without it. Each is named on every run, in the summary and the metrics, and no job runs
for its group, until ``changed_inputs: reconvert`` converts it again (the old MS set aside, never
deleted) or the files are restored."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from dsa110ms.groups import discover
from dsa110ms.ms.publish import (
    STAMP_NAME,
    OutputArea,
    damage,
    exchange,
    input_changes,
    input_identities,
    is_current,
    is_published,
    replace_published,
    stamp_of,
)
from dsa110ms.observe import metrics
from dsa110ms.simulate import SimulationSpec, simulate

from .conftest import run_snakemake
from .test_robustness import assert_matches_input, last_run, small_config


def events_since(work: Path, since: float) -> list[dict]:
    return metrics.read_events(work / "logs" / "metrics", since)


def summary_lines(output: str) -> dict[str, str]:
    """Group -> its line of the end-of-run summary table."""
    table = output[output.rindex("[dsa110ms] run summary:") :]
    return {m[1]: m[0] for m in re.finditer(r"^  (\d{4}-\S+)  .*$", table, re.M)}


def test_changed_and_late_inputs_are_reported_every_run_then_reconverted(tmp_path, scratch_root):
    """Run 1 publishes two groups of subbands 0, 1, 15: group A whole, group B without sb01
    (still ``_incomplete``, incomplete_groups=convert). Then A's sb15 is re-sent under the same
    name with other data, and B's sb01 is renamed into place. Run 2 (default changed_inputs:
    report), a run with nothing to do and a dry run after them name both groups and both files,
    run no job for them and keep both MSs as they are; the summary says CHANGED, not
    up-to-date, and the metrics count them. Run 3 (changed_inputs: reconvert) converts both
    again: each new MS equals its files now, the old ones are set aside, complete, and nothing
    is reported any more."""
    inp, out = tmp_path / "in", tmp_path / "out"
    simulate(SimulationSpec(n_groups=2, subbands=(0, 1, 15)), inp)
    groups = list(discover(inp, incomplete_groups="convert"))
    (ga, a), (gb, b) = ((g.id, g.files) for g in groups)
    a_sb15, b_sb01 = Path(a[15]), Path(b[1])
    b_incomplete = b_sb01.with_name(b_sb01.name.replace(".hdf5", "_incomplete.hdf5"))
    os.rename(b_sb01, b_incomplete)
    config = small_config(inp, out, scratch_root)
    run_snakemake(tmp_path, "--cores", "2", config=config)
    assert stamp_of(out / f"{gb}.ms")["spws"] == 2
    first = {g: stamp_of(out / f"{g}.ms") for g in (ga, gb)}
    assert set(first[ga]["inputs"]) == {"sb00", "sb01", "sb15"}

    # A's sb15 re-sent: same name and size, other data; B's late sb01 renamed into place
    resent = tmp_path / "resent"
    simulate(SimulationSpec(n_groups=1, subbands=(15,), noise_jy=0.5), resent)
    os.replace(resent / a_sb15.name, a_sb15)
    os.rename(b_incomplete, b_sb01)

    # a real run, a second one (nothing to be done: no hook runs, the summary and the metrics
    # still say it), then a dry run: no job for either group
    for dry in (False, False, True):
        started = time.time()
        proc = run_snakemake(tmp_path, "--cores", "2", *(["-n"] if dry else []), config=config)
        warned = [line for line in proc.stdout.splitlines() if "input files changed" in line]
        assert len(warned) == 2, proc.stdout[-3000:]
        assert a_sb15.name in warned[0] and "rewritten" in warned[0]
        assert b_sb01.name in warned[1] and "arrived after publication" in warned[1]
        assert all("changed_inputs: reconvert" in line for line in warned)
        assert "rule ms_part" not in proc.stdout and "rule ms_template" not in proc.stdout
        assert "rule concat" not in proc.stdout
        for g in (ga, gb):
            assert stamp_of(out / f"{g}.ms") == first[g], "the published MS is kept as it was"
            assert OutputArea.of(out).stamp(g).exists()
        if dry:
            continue
        assert not [e for e in events_since(tmp_path, started) if e.get("group") in (ga, gb)]
        rows = summary_lines(proc.stdout)
        assert "CHANGED" in rows[ga] and a_sb15.name in rows[ga], rows
        assert "CHANGED" in rows[gb] and b_sb01.name in rows[gb], rows
        assert "up-to-date" not in proc.stdout[proc.stdout.rindex("run summary") :]
        run = last_run(tmp_path)
        assert run["groups_changed_inputs"] == 2 and set(run["changed_inputs"]) == {ga, gb}
        prom = (tmp_path / "logs" / "metrics" / "dsa110ms.prom").read_text()
        assert "dsa110ms_last_run_groups_changed_inputs 2" in prom

    proc = run_snakemake(tmp_path, "--cores", "2", config={**config, "changed_inputs": "reconvert"})
    rows = summary_lines(proc.stdout)
    for g in (ga, gb):
        assert "reconverted" in rows[g], rows
        (aside,) = out.glob(f"{g}.ms.replaced-*")
        assert f"previous MS set aside at {aside}" in rows[g]
        assert damage(aside, g) is None and stamp_of(aside) == first[g], "old MS kept, intact"
        assert_matches_input(out / f"{g}.ms", inp, g)
        assert stamp_of(out / f"{g}.ms")["replaced"]["ms"] == str(aside)
    assert stamp_of(out / f"{gb}.ms")["spws"] == 3
    assert last_run(tmp_path)["groups_changed_inputs"] == 0
    check = OutputArea.of(out).check_stamps(groups, stamp_of(out / f"{ga}.ms")["options"])
    assert check.changed == {} and check.notes == [], "nothing reported once reconverted"


def ms_dir(path: Path, group: str, inputs: dict | None) -> Path:
    """A stand-in for a published MS: a directory with a stamp (all :func:`damage` reads)."""
    path.mkdir()
    stamp = {"group": group, "validated_utc": "2026-12-01T00:00:00Z", "files": {}}
    if inputs is not None:
        stamp["inputs"] = inputs
    (path / STAMP_NAME).write_text(json.dumps(stamp))
    return path


def test_input_changes_name_each_file_and_what_changed(tmp_path):
    a, b = tmp_path / "2026-03-01T00:00:00_sb00.hdf5", tmp_path / "2026-03-01T00:00:01_sb15.hdf5"
    a.write_bytes(b"x" * 10)
    recorded = input_identities([a])
    assert input_changes(recorded, input_identities([a])) == []
    b.write_bytes(b"y")
    a.write_bytes(b"x" * 12)
    assert input_changes(recorded, input_identities([a, b])) == [
        f"sb00 {a.name} changed: 10 -> 12 bytes, modified "
        + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(a.stat().st_mtime)),
        f"sb15 {b.name} arrived after publication",
    ]
    renamed = a.with_name("2026-03-01T00:00:02_sb00.hdf5")
    os.rename(a, renamed)
    assert input_changes(recorded, input_identities([renamed])) == [
        f"sb00 is now {renamed.name} (was {a.name})"
    ]
    assert input_changes(recorded, input_identities([])) == [f"sb00 {a.name} is gone"]


def test_a_stamp_without_inputs_is_not_called_changed(tmp_path):
    """MSs published before inputs were recorded: kept, never reported as changed."""
    legacy = ms_dir(tmp_path / "g.ms", "g", None)
    assert is_current(legacy, "g", {"sb00": {"file": "x", "size": 1, "mtime_ns": 1}})
    recorded = ms_dir(tmp_path / "h.ms", "h", {"sb00": {"file": "x", "size": 1, "mtime_ns": 1}})
    assert not is_current(recorded, "h", {"sb00": {"file": "x", "size": 1, "mtime_ns": 2}})


def test_replace_published_swaps_in_one_step_and_keeps_the_old_ms(tmp_path):
    (tmp_path / "out").mkdir()
    final = ms_dir(tmp_path / "out" / "g.ms", "g", {})
    staging = ms_dir(tmp_path / "out" / "staging", "g", {"sb00": {}})
    old_inode = final.stat().st_ino
    try:
        exchange(staging, final)  # this file system swaps in one step (tmp is ext4 or tmpfs)
        exchange(staging, final)
    except OSError as exc:
        pytest.skip(f"no RENAME_EXCHANGE here: {exc}")
    aside = tmp_path / "out" / "g.ms.replaced-x"
    replace_published(staging, final, aside)
    assert aside.stat().st_ino == old_inode and is_published(aside)
    assert stamp_of(final)["inputs"] == {"sb00": {}} and not staging.exists()


def test_the_stamp_records_each_input_as_its_part_job_read_it(tmp_path):
    """A file removed (or re-sent) after its part was written, before the join: the MS's stamp
    records it as it was read, so the next run reports it gone (or changed); it was recorded
    from the files as they were at the join, which left a removed file out and made an MS
    holding its data look complete."""
    from dsa110ms.ms.join_group import inputs_as_read
    from dsa110ms.ms.part import write_part

    simulate(
        SimulationSpec(n_antennas=4, n_integrations=2, n_channels=8, subbands=(0, 15)), tmp_path
    )
    (group,) = discover(tmp_path, incomplete_groups="convert")
    sources = {}
    for sb, path in group.files.items():
        part = tmp_path / "scratch" / f"sb{sb:02d}.part"
        write_part(path, part)
        sources[str(part)] = path
    as_read = input_identities(group.files.values())
    os.remove(group.files[15])
    recorded = inputs_as_read(sources)
    assert recorded == as_read
    (change,) = input_changes(recorded, input_identities([group.files[0]]))
    assert change == f"sb15 {Path(group.files[15]).name} is gone"


def test_a_join_replaces_a_published_ms_only_when_told_and_never_with_stale_data(tmp_path):
    """The join itself (two runs can race the main process's decision): under
    ``changed_inputs: report`` it keeps a published MS made from other files, whatever it
    holds; under ``reconvert`` it replaces it in one swap (nothing left under the swapping
    name); and it never publishes data of a file that changed after its part was read (a run
    that started before a file was re-sent replaced the MS a later run had made from it)."""
    from dsa110ms.errors import JoinError
    from dsa110ms.ms.join_group import JoinOptions, join_group
    from dsa110ms.ms.part import write_part
    from dsa110ms.ms.template import write_template

    simulate(
        SimulationSpec(n_antennas=4, n_integrations=2, n_channels=8, subbands=(0, 15)), tmp_path
    )
    (group,) = discover(tmp_path, incomplete_groups="convert")
    work, area = tmp_path / "work", OutputArea.of(tmp_path / "out")
    template = write_template(group.files[0], work / "template.ms")

    def join(replace_changed: bool, attempt: int, resent_ns: int | None = None):
        """Parts written from the files (each re-sent first if ``resent_ns``: a new mtime),
        then joined; with ``resent_ns``, every file is re-sent again after its part."""
        parts = {}
        for sb, path in group.files.items():
            if resent_ns:
                os.utime(path, ns=(1, resent_ns))
            parts[str(write_part(path, work / f"sb{sb}.{attempt}.part"))] = path
            if resent_ns:
                os.utime(path, ns=(1, resent_ns + 1))
        options = JoinOptions(contiguous=False, replace_changed=replace_changed)
        return join_group(
            group.id,
            template,
            sorted(parts, reverse=True),
            area,
            options,
            instance="t",
            group_scratch=work,
            sources=parts,
            attempt=attempt,
        )

    assert join(False, 1)[1], "published"
    first = stamp_of(area.final_ms(group.id))
    os.utime(group.files[15], ns=(1, 10**18))  # re-sent: another modification time
    assert join(False, 2) == (None, False) and stamp_of(area.final_ms(group.id)) == first
    assert join(True, 3)[1], "replaced under reconvert"
    assert len(list(area.output_dir.glob("*.ms.replaced-*"))) == 1
    assert not area.interrupted_swaps()
    now = stamp_of(area.final_ms(group.id))
    with pytest.raises(JoinError, match="changed while this run converted it"):
        join(True, 4, resent_ns=2 * 10**18)
    assert stamp_of(area.final_ms(group.id)) == now, "the published MS is kept as it was"
    # a process killed between the swap's renames leaves a complete MS under the swapping name:
    # never removed, reported by every run
    (area.output_dir / f"{group.id}.ms.swapping-20261202T000000").mkdir()
    notes = area.check_stamps([group], now["options"]).notes
    assert any("left by a replacement that was interrupted" in n for n in notes), notes
    assert stamp_of(area.final_ms(group.id)) == now, "the published MS is kept as it was"
