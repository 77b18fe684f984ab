"""Configuration is validated against config/schema.yaml with one-line errors."""

import pytest
import yaml

from dsa110ms.config import SCHEMA_PATH, validate_config
from dsa110ms.errors import ConfigError


def test_defaults_fill_everything():
    s = validate_config({})
    assert s["scratch_root"] == "/dev/shm/dsa110ms"
    assert s["tolerance_s"] == 60
    assert s["faults"] == {
        "concat": {},
        "cleanup_permission_error": False,
        "part_crash": [],
        "concat_delay_s": 0,
    }
    assert s["simulate"]["subbands"] == list(range(16))


def test_shipped_config_is_valid():
    config = yaml.safe_load((SCHEMA_PATH.parent / "config.yaml").read_text())
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
