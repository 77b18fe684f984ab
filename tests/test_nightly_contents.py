"""What is inside the files (issue 19, B.1 and B.6): storage the correlator never wrote is refused,
never published as zeros; a corrupt chunk is named as corrupt; a subband that differs from its
group is named (not the file compared first), with the item that differs. Every refusal is one
line naming the file."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from dsa110ms.errors import CorruptDataError, JoinError, UnwrittenDataError
from dsa110ms.ms.part import write_part
from dsa110ms.ms.template import write_template
from dsa110ms.ms.validate import check_parts
from dsa110ms.simulate import SimulationSpec, simulate

pytestmark = pytest.mark.filterwarnings("ignore")

#: A tiny group: 4 antennas (10 baselines with autos), 3 integrations (30 rows), 8 channels.
SPEC = {"n_antennas": 4, "n_integrations": 3, "n_channels": 8, "max_jitter_s": 0}
#: Rows per chunk of a rewritten dataset: 4 chunks of 30 rows (the last one partial).
CHUNK_ROWS = 8
CANNOT = "the group cannot be joined"


@pytest.fixture(scope="module")
def group(tmp_path_factory) -> list[Path]:
    """sb00..sb03 of one group, sb00 first."""
    return simulate(SimulationSpec(subbands=(0, 1, 2, 3), **SPEC), tmp_path_factory.mktemp("g"))


@pytest.fixture(scope="module")
def made(group, tmp_path_factory):
    """The group's template (from sb00, the template's source) and its four parts."""
    d = tmp_path_factory.mktemp("made")
    template = write_template(group[0], d / "template.ms")
    parts = {str(f): write_part(f, d / f"{f.stem}.part") for f in group}
    return template, parts


def copy_of(path: Path, tmp_path: Path) -> Path:
    """A copy of an input file under the same name, in its own directory."""
    (tmp_path / "in").mkdir(exist_ok=True)
    return Path(shutil.copyfile(path, tmp_path / "in" / path.name))


def rewrite(path: Path, name: str, storage: str, written_rows: int) -> None:
    """Dataset ``name`` (Data/visdata, Header/time_array...) made again as a correlator that
    stopped would leave it: ``storage``
    "chunked" (chunks of CHUNK_ROWS rows, the fast reader's case), "gzip" (the same, compressed:
    HDF5's path), "fletcher32" (checksummed) or "contiguous"; only the first ``written_rows`` rows
    written (0: never written)."""
    with h5py.File(path, "r+") as f:
        values = f[name][()]
        del f[name]
        chunks = {"chunks": (CHUNK_ROWS, *values.shape[1:])}
        kwargs = {
            "chunked": chunks,
            "gzip": {**chunks, "compression": "gzip"},
            "fletcher32": {**chunks, "fletcher32": True},
            "contiguous": {},
        }[storage]
        ds = f.create_dataset(name, shape=values.shape, dtype=values.dtype, **kwargs)
        if written_rows:
            ds[:written_rows] = values[:written_rows]


# --- B.1: storage never written ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "storage", "written_rows", "what"),
    [
        ("Data/visdata", "chunked", 16, "has 2 of 4 chunks never written"),
        ("Data/visdata", "gzip", 16, "has 2 of 4 chunks never written"),
        ("Data/visdata", "contiguous", 0, "was never written (no storage allocated)"),
        ("Data/flags", "chunked", 8, "has 3 of 4 chunks never written"),
        ("Data/nsamples", "contiguous", 0, "was never written (no storage allocated)"),
        ("Header/time_array", "chunked", 16, "has 2 of 4 chunks never written"),
    ],
)
def test_storage_never_written_is_refused_in_one_line(
    group, tmp_path, name, storage, written_rows, what
):
    path = copy_of(group[1], tmp_path)
    rewrite(path, name, storage, written_rows)
    with pytest.raises(UnwrittenDataError) as error:
        write_part(path, tmp_path / "p" / "part")
    assert str(error.value) == (
        f"{path}: /{name} {what} (the correlator stopped writing?); not converted"
    )
    assert not (tmp_path / "p" / "part").exists()


def test_what_pyuvdata_would_publish_is_refused_by_the_part_and_the_template(group, tmp_path):
    """pyuvdata reads the fill value of the chunks never written as data: zeros, unflagged. Both
    our readers (the part's, h5py; the template's, pyuvdata) refuse the file instead."""
    from dsa110ms.uvh5 import read_subband

    path = copy_of(group[0], tmp_path)
    rewrite(path, "Data/visdata", "chunked", 16)
    uv = read_subband(str(path))
    assert np.all(uv.data_array[16:] == 0) and not uv.flag_array[16:].any()
    for write in (write_part, write_template):
        with pytest.raises(UnwrittenDataError, match="2 of 4 chunks never written"):
            write(path, tmp_path / write.__name__ / "out")


def test_a_virtual_dataset_whose_source_is_gone_is_refused(group, tmp_path):
    path = copy_of(group[2], tmp_path)
    with h5py.File(path, "r+") as f:
        values = f["Data/visdata"][()]
        with h5py.File(tmp_path / "in" / "visdata.h5", "w") as src:
            src["v"] = values
        layout = h5py.VirtualLayout(shape=values.shape, dtype=values.dtype)
        layout[...] = h5py.VirtualSource("visdata.h5", "v", shape=values.shape)
        del f["Data/visdata"]
        f["Data"].create_virtual_dataset("visdata", layout)
    part = write_part(path, tmp_path / "p" / "ok")  # readable while its source is there
    assert np.array(np.load(part / "DATA.npy")).any()
    (tmp_path / "in" / "visdata.h5").unlink()
    with pytest.raises(UnwrittenDataError, match="/Data/visdata maps values to visdata.h5:v, wh"):
        write_part(path, tmp_path / "p" / "gone")


# --- B.6: a corrupt chunk ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "storage", "filters"),
    [
        ("Data/visdata", "gzip", "deflate"),
        ("Data/visdata", "fletcher32", "fletcher32"),
        ("Header/time_array", "gzip", "deflate"),
    ],
)
def test_a_bit_flip_in_a_filtered_chunk_is_named_as_corrupt(
    group, tmp_path, name, storage, filters
):
    path = copy_of(group[3], tmp_path)
    rewrite(path, name, storage, 30)
    with h5py.File(path, "r") as f:
        info = f[name].id.get_chunk_info(1)
        offset = (CHUNK_ROWS,) + (0,) * (f[name].ndim - 1)
    raw = bytearray(path.read_bytes())
    raw[info.byte_offset + info.size // 2] ^= 0x10
    path.write_bytes(raw)
    want = (
        f"{path}: /{name}: its chunk at offset {offset} (2 of 4) is corrupt "
        f"(its filters {filters} failed: checksum or decompression error); not converted"
    )
    for write in (write_part, write_template):  # h5py's reader and pyuvdata's
        with pytest.raises(CorruptDataError) as error:
            write(path, tmp_path / write.__name__ / "out")
        assert str(error.value) == want, write.__name__


# --- B.6: the file that differs is named, with what differs ------------------------------------


def parts_in_spw_order(parts: dict, replaced: dict | None = None) -> tuple[list, dict]:
    """Parts lowest frequency first (as the join orders them: sb03 first), and their sources."""
    parts = {**parts, **(replaced or {})}
    ordered = sorted(parts.items(), key=lambda kv: kv[0][-7:], reverse=True)
    return [str(p) for _, p in ordered], {str(p): f for f, p in ordered}


def test_the_template_source_with_one_integration_fewer_is_named_not_the_first_part(
    group, tmp_path
):
    short = tmp_path / "short"
    (sb00,) = simulate(SimulationSpec(subbands=(0,), **{**SPEC, "n_integrations": 2}), short)
    files = [sb00, *group[1:]]
    template = write_template(sb00, tmp_path / "template.ms")
    parts = {str(f): write_part(f, tmp_path / f"{f.stem}.part") for f in files}
    with pytest.raises(JoinError) as error:
        check_parts(template, *parts_in_spw_order(parts))
    assert str(error.value) == (
        f"number of times: {sb00} (the template's source) has 2, the 3 other files of the group "
        f"3; {CANNOT}"
    )
    # two files, no majority: both are named, each with its value
    two = dict(list(parts.items())[:2])
    with pytest.raises(JoinError) as error:
        check_parts(template, *parts_in_spw_order(two))
    assert str(error.value) == (
        f"number of times differs between the files of the group, none in a majority: "
        f"{group[1]} has 3; {sb00} (the template's source) has 2; {CANNOT}"
    )


def test_the_lowest_frequency_part_with_other_channels_is_the_one_named(group, made, tmp_path):
    template, parts = made
    (sb03,) = simulate(SimulationSpec(subbands=(3,), **{**SPEC, "n_channels": 16}), tmp_path)
    odd = {str(group[3]): write_part(sb03, tmp_path / "sb03.part")}
    ordered, sources = parts_in_spw_order(parts, odd)
    sources[ordered[0]] = str(group[3])
    with pytest.raises(JoinError) as error:
        check_parts(template, ordered, sources)
    assert str(error.value) == (
        f"number of channels: {group[3]} has 16, the 3 other files of the group 8; {CANNOT}"
    )


def _move_antenna(header):
    header["antenna_positions"][16] += np.array([0.3, 0.0, 0.0])


def _set(name, value):
    def change(header):
        del header[name]
        header[name] = value

    return change


def _relabel_one_baseline(header):
    header["ant_2_array"][1] = 39  # 116-0 said to be 116-39 (a row written to the wrong slot)


def _shift_one_time(header):
    header["time_array"][10:20] += 1e-6  # the second integration's 10 baselines, 86.4 ms later


def _rename_pad(header):
    names = header["antenna_names"][()]
    names[16] = b"17b"
    _set("antenna_names", names)(header)


def _narrow_ant_1(header):
    _set("ant_1_array", header["ant_1_array"][()].astype(np.int32))(header)


GEOMETRY_CHANGES = {
    "pad_name": (
        _rename_pad,
        "antenna_names: 1 of 117 values differ (first at index (16,): '17b' vs '17')",
    ),
    "antenna": (_move_antenna, "antenna_positions of antenna 17 (number 16) differ by 0.300 m"),
    "pointing": (
        _set("extra_keywords/phase_center_dec", np.radians(55.1)),
        "extra_keywords/phase_center_dec is 55.1 deg vs 55 deg",
    ),
    "one_time": (
        _shift_one_time,
        "time_array: 10 of 30 values differ, by up to 0.0864 s (first at index (10,))",
    ),
    "site": (_set("telescope_name", np.bytes_("OVRO")), "telescope_name is 'OVRO' vs 'OVRO_MMA'"),
    "baselines": (
        _relabel_one_baseline,
        "ant_2_array: 1 of 30 values differ (first at index (1,): 39 vs 0)",
    ),
}


@pytest.mark.parametrize("change", GEOMETRY_CHANGES)
def test_a_geometry_difference_names_the_file_and_the_item(group, made, tmp_path, change):
    template, parts = made
    alter, what = GEOMETRY_CHANGES[change]
    path = copy_of(group[2], tmp_path)
    with h5py.File(path, "r+") as f:
        alter(f["Header"])
    odd = {str(group[2]): write_part(path, tmp_path / f"{path.stem}.part")}
    ordered, sources = parts_in_spw_order(parts, odd)
    sources[str(odd[str(group[2])])] = str(path)
    with pytest.raises(JoinError) as error:
        check_parts(template, ordered, sources)
    message = str(error.value)
    head = (
        f"geometry: {path} differs from the 3 other files of the group (compared with {group[3]}): "
    )
    assert message.startswith(head + what), message
    assert message.endswith(CANNOT) and "\n" not in message
    assert not re.search("[0-9a-f]{64}", message), "a digest says nothing to a person"


def test_a_template_whose_source_changed_since_is_named_with_the_item(group, made, tmp_path):
    """The parts agree with each other but not with the template: its source changed between
    the two jobs."""
    _, parts = made
    changed = copy_of(group[0], tmp_path)
    with h5py.File(changed, "r+") as f:
        _move_antenna(f["Header"])
    template = write_template(changed, tmp_path / "template.ms")
    ordered, sources = parts_in_spw_order(parts)
    with pytest.raises(JoinError) as error:
        check_parts(template, ordered, sources)
    assert str(error.value) == (
        f"{changed}: the template made from it differs in geometry (antenna_positions) from every "
        "part of the group, its own included: the file changed after the template was made? "
        f"(a rerun makes both again); {CANNOT}"
    )


def test_a_group_that_agrees_passes_even_if_a_file_stores_the_same_values_in_another_type(
    group, made, tmp_path
):
    template, parts = made
    path = copy_of(group[1], tmp_path)
    with h5py.File(path, "r+") as f:
        _narrow_ant_1(f["Header"])  # int32 antennas instead of int64: the same MS
    odd = {str(group[1]): write_part(path, tmp_path / f"{path.stem}.part")}
    summaries = check_parts(template, *parts_in_spw_order(parts, odd))
    assert len(summaries) == 4 and math.isclose(summaries[0].n_times, 3)


# --- end to end: one real run ---------------------------------------------------------------------


def test_a_run_publishes_neither_unwritten_data_nor_a_group_whose_template_source_differs(
    tmp_path, scratch_root
):
    """Two groups of three subbands: in the first the correlator stopped writing sb15's visdata
    half-way, in the second sb00 (the template's source) has one integration fewer. Neither is
    published; the summary gives each group's one line, naming the file at fault."""
    from .conftest import run_snakemake

    d = tmp_path / "in"
    spec = {**SPEC, "subbands": (0, 7, 15), "start": "2026-03-15T03:00:00"}
    files = simulate(SimulationSpec(n_groups=2, **spec), d)
    unwritten, short = files[2], files[3]  # group 1's sb15, group 2's sb00
    rewrite(unwritten, "Data/visdata", "chunked", 16)
    shorter = {**spec, "subbands": (0,), "n_integrations": 2}
    _, other = simulate(SimulationSpec(n_groups=2, **shorter), tmp_path / "short")
    shutil.copyfile(other, short)  # the same first integration, one integration fewer
    config = {
        "input_dir": d,
        "output_dir": tmp_path / "out",
        "scratch_root": scratch_root,
        "incomplete_groups": "convert",
    }
    proc = run_snakemake(tmp_path, "--cores", "2", config=config, check=False)
    assert proc.returncode != 0
    assert not list((tmp_path / "out").glob("*.ms")), "nothing is published"
    rows = {x.split()[0]: x for x in proc.stdout.splitlines() if x.strip()[:4] == "2026"}
    first, second = unwritten.stem[:19], short.stem[:19]
    unwritten_line = (
        f"{unwritten}: /Data/visdata has 2 of 4 chunks never written (the correlator stopped "
        "writing?); not converted"
    )
    assert "FAILED" in rows[first] and unwritten_line in rows[first], rows[first]
    blame = f"number of times: {short} (the template's source) has 2, the 2 other files of the "
    assert "FAILED" in rows[second] and blame + "group 3" in rows[second], rows[second]


def test_a_broken_channel_grid_names_the_spw_and_its_part_not_the_first_one():
    """The first SPW on another channel spacing is the odd one: the majority's spacing is the
    grid (it was the first SPW's)."""
    from dsa110ms.errors import ValidationError
    from dsa110ms.ms.validate import check_frequencies

    odd = np.arange(4.0) * 5.0 - 40.0
    grid = (odd, np.arange(4.0) * 10.0, np.arange(4.0) * 10.0 + 40.0)
    with pytest.raises(ValidationError) as error:
        check_frequencies(grid, "group g", names=["sb15.part", "sb14.part", "sb13.part"])
    assert str(error.value) == (
        "group g: channels are not contiguous (step 5.000 Hz after -40.000 Hz, at SPW 0 "
        "(sb15.part); channel spacing 10.000 Hz)"
    )


def test_a_time_without_a_field_is_named():
    from dsa110ms.geometry import FieldDirections

    zeros = np.zeros(2)
    fields = FieldDirections(np.array([2461374.5, 2461374.6]), *[zeros] * 6)
    with pytest.raises(ValueError, match=r"time 2461374.55000000 JD \(index 1\) is not one of"):
        fields.index_of(np.array([2461374.5, 2461374.55]))
