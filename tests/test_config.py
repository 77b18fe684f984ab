"""Configuration is validated against dsa110ms/schema.yaml with one-line errors."""

import pytest
import yaml

from dsa110ms.errors import ConfigError
from dsa110ms.schema import validate_config

from .conftest import REPO


def test_defaults_fill_everything():
    s = validate_config({})
    assert s["scratch_root"] == "/dev/shm/dsa110ms"
    assert s["tolerance_s"] == 60
    assert "faults" not in s, "test faults are not configuration (dsa110ms.faults)"
    assert s["simulate"]["subbands"] == list(range(16))


def test_shipped_config_is_valid():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert validate_config(config)["input_dir"] == "input"


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"inptu_dir": "x"}, "unknown config key 'inptu_dir' (did you mean 'input_dir'?)"),
        ({"simulate": {"n_antenas": 5}}, "'n_antenas' (did you mean 'n_antennas'?) in simulate"),
        ({"tolerance_s": "abc"}, "config key tolerance_s: 'abc' is not of type 'number'"),
        (
            {"incomplete_groups": "maybe"},
            "config key incomplete_groups: 'maybe' is not allowed; allowed: skip, fail, convert",
        ),
        ({"simulate": {"n_groups": 0}}, "simulate.n_groups"),
        ({"start_time": "2026-01-01"}, "start_time: '2026-01-01' is not in the expected form"),
        ({"groups": ["today"]}, "groups.0"),
    ],
)
def test_errors_are_one_line(bad, words):
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_nested_command_line_values_are_typed():
    """snakemake --config simulate='{n_groups: 2}' delivers '2' as a string."""
    s = validate_config({"simulate": {"n_groups": "2", "subbands": ["0", "15"]}})
    assert s["simulate"]["n_groups"] == 2 and s["simulate"]["subbands"] == [0, 15]
    with pytest.raises(ConfigError, match="simulate.n_groups"):
        validate_config({"simulate": {"n_groups": "two"}})


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"tolerance_s": float("nan")}, "config key tolerance_s: nan is not a finite number"),
        ({"tolerance_s": "nan"}, "config key tolerance_s: nan is not a finite number"),
        ({"tolerance_s": float("inf")}, "config key tolerance_s: inf is not a finite number"),
        ({"tolerance_s": 1e300}, "config key tolerance_s: 1e+300 is greater than the maximum"),
        ({"tolerance_s": 400}, "tolerance_s: 400 is greater than the maximum of 150; Max."),
        (
            {"simulate": {"source_ha_offset_deg": "-inf"}},
            "config key simulate.source_ha_offset_deg: -inf is not a finite number",
        ),
        (
            {"simulate": {"pointing_dec_deg": float("nan")}},
            "config key simulate.pointing_dec_deg: nan is not a finite number",
        ),
    ],
)
def test_numbers_must_be_finite_and_tolerance_below_half_the_cadence(bad, words):
    """NaN passes jsonschema's minimum and maximum (every comparison with NaN is false)."""
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_schema_bound_on_tolerance_is_the_one_discovery_enforces():
    from dsa110ms.groups import MAX_TOLERANCE_S
    from dsa110ms.schema import load_schema

    assert load_schema()["properties"]["tolerance_s"]["maximum"] == MAX_TOLERANCE_S
    assert validate_config({"tolerance_s": MAX_TOLERANCE_S})["tolerance_s"] == MAX_TOLERANCE_S


@pytest.mark.parametrize(
    "bad, words",
    [
        (
            {"start_time": "2026-02-30T25:61:61"},
            "config key start_time: '2026-02-30T25:61:61' is not a real time (day is out of "
            "range for month)",
        ),
        (
            {"end_time": "2026-01-15T24:00:00"},
            "config key end_time: '2026-01-15T24:00:00' is not a real time (hour must be in 0..23)",
        ),
        (
            {"groups": ["2026-01-15T03:00:00", "2026-13-01T00:00:00"]},
            "config key groups.1: '2026-13-01T00:00:00' is not a real time (month must be in",
        ),
        (
            {"simulate": {"start": "2026-02-29T00:00:00"}},
            "config key simulate.start: '2026-02-29T00:00:00' is not a real time",
        ),
    ],
)
def test_impossible_times_are_one_line(bad, words):
    with pytest.raises(ConfigError) as err:
        validate_config(bad)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert validate_config({"start_time": "2028-02-29T23:59:59"})["start_time"]  # a leap day


def test_settings_fields_are_the_schema_keys():
    """Adding a config key: the schema entry and the Settings field, both or neither."""
    from dataclasses import fields

    from dsa110ms.schema import load_schema
    from dsa110ms.settings import Settings

    assert [f.name for f in fields(Settings)] == list(load_schema()["properties"])
    settings = Settings.from_config({"spw_layout": "single"})
    assert settings.spw_layout == "single" and Settings.from_json(settings.to_json()) == settings


@pytest.mark.parametrize("word, value", [("false", False), ("False", False), ("true", True)])
def test_booleans_as_the_command_line_gives_them(word, value):
    """``--config keep_autocorrelations=false`` arrives as the string "false" (Snakemake turns
    only True/False into booleans); it means what the config file's ``false`` means."""
    assert validate_config({"keep_autocorrelations": word})["keep_autocorrelations"] is value
    with pytest.raises(ConfigError, match="keep_autocorrelations"):
        validate_config({"keep_autocorrelations": "maybe"})


def test_leap_second_config_times_are_times():
    """Finding 15c: a leap second (23:59:60) is accepted in config times as in file names; a
    :60 anywhere else is refused, saying where a leap second is."""
    leap = "2016-12-31T23:59:60"
    settings = validate_config({"start_time": leap, "end_time": leap, "groups": [leap]})
    assert settings["end_time"] == leap
    with pytest.raises(ConfigError) as err:
        validate_config({"end_time": "2016-12-31T12:30:60"})
    assert "not a real time (second must be in 0..59; a leap second is 23:59:60)" in str(err.value)


def test_reversed_window_is_refused_in_one_line():
    """Finding 15a: start_time after end_time said "... widen the window" after discovery."""
    with pytest.raises(ConfigError) as err:
        validate_config({"start_time": "2026-12-02T00:00:00", "end_time": "2026-12-01T23:59:59"})
    assert str(err.value) == (
        "config keys start_time and end_time: start_time=2026-12-02T00:00:00 is after "
        "end_time=2026-12-01T23:59:59: the two bounds are reversed; swap them (fix it in "
        "config/config.yaml or with snakemake --config)"
    )
    assert validate_config({"start_time": "2017-01-01T00:00:00", "end_time": "2016-12-31T23:59:60"})


def test_a_nul_in_a_directory_is_one_line():
    """A NUL in input_dir reached os.scandir, whose ValueError was a traceback."""
    with pytest.raises(ConfigError, match="input_dir: 'a\\\\x00b': it holds a NUL character"):
        validate_config({"input_dir": "a\0b"})
