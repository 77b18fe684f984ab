"""The configuration validated against dsa110ms/schema.yaml: defaults filled in, one-line errors
naming the key (:class:`dsa110ms.settings.Settings` is the result)."""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, FormatChecker, validators

from dsa110ms.errors import ConfigError
from dsa110ms.groups import TIMESTAMP_PATTERN, parse_timestamp, reversed_window
from dsa110ms.telescope import LATITUDE_DEG, MS_TELESCOPE_NAME

SCHEMA_PATH = Path(__file__).with_name("schema.yaml")
FIX = "fix it in config/config.yaml or with snakemake --config"


def _with_defaults(validator_class):
    """A validator that fills in ``default`` values while it validates (jsonschema FAQ recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


DefaultingValidator = _with_defaults(Draft202012Validator)

#: Formats of the schema: ``timestamp``, a real time, not only the YYYY-MM-DDTHH:MM:SS shape that
#: ``pattern`` checks (2026-02-30T25:61:61 has the shape; a leap second, 23:59:60, is a time, as
#: in file names); ``directory``, a path Snakemake can use in its patterns. Only these formats
#: are checked.
FORMATS = FormatChecker(formats=())


NOT_A_TIMESTAMP = "not in the form YYYY-MM-DDTHH:MM:SS"


@FORMATS.checks("timestamp", raises=ValueError)
def _is_timestamp(value) -> bool:
    if not isinstance(value, str):
        return True  # `type` says what is wrong
    if not re.fullmatch(TIMESTAMP_PATTERN, value):
        raise ValueError(NOT_A_TIMESTAMP)
    parse_timestamp(value)  # ValueError says which field is out of range
    return True


@FORMATS.checks("directory", raises=ValueError)
def _is_directory_name(value) -> bool:
    # Snakemake reads braces in a path as wildcards and has no escape for them in patterns
    if isinstance(value, str) and ("{" in value or "}" in value):
        raise ValueError("it holds { or }, which Snakemake reads as wildcards")
    if isinstance(value, str) and "\0" in value:
        raise ValueError("it holds a NUL character, which no path can hold")
    return True


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(path.read_text())


#: How booleans may be written on the command line (YAML's words for them, any case).
BOOLEAN_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _coerce(value, schema: dict):
    """Numbers and booleans written as strings -> numbers and booleans, where the schema wants
    them.

    ``snakemake --config key='{a: 1}'`` parses nested values with YAML's BaseLoader, which keeps
    every scalar a string; top-level values arrive typed, but only ``True``/``False`` as booleans
    (``keep_autocorrelations=false``, as the config file writes it, stays a string). Anything that
    does not convert is left alone for the validator to report.
    """
    kind = schema.get("type")
    if isinstance(value, dict) and "properties" in schema:
        return {k: _coerce(v, schema["properties"].get(k, {})) for k, v in value.items()}
    if isinstance(value, list) and "items" in schema:
        return [_coerce(v, schema["items"]) for v in value]
    if isinstance(value, str) and kind == "boolean":
        return BOOLEAN_WORDS.get(value.lower(), value)
    if isinstance(value, str) and kind in ("integer", "number"):
        try:
            return int(value) if kind == "integer" else float(value)
        except ValueError:
            return value
    return value


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """A validated copy of ``config`` with defaults; raises ConfigError with one line."""
    schema = schema or load_schema()
    settings = _coerce(copy.deepcopy(dict(config)), schema)
    _check_finite(settings, schema)
    validator = DefaultingValidator(schema, format_checker=FORMATS)
    errors = sorted(validator.iter_errors(settings), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(explain(errors[0], schema))
    refuse_reversed_window(settings)
    refuse_paths_casa_splits(settings)
    check_phase_center(settings)
    return settings


def check_phase_center(settings: dict) -> None:
    """``phase_center: fixed`` needs both coordinates, and only it takes them; a phase centre
    other than per_integration is DSA-110 mode's (generic mode: ``generic_phasing``)."""
    kind = settings["phase_center"]
    given = [k for k in ("phase_center_ra_deg", "phase_center_dec_deg") if settings[k] is not None]
    if kind == "fixed" and len(given) < 2:
        raise ConfigError(
            "config key phase_center: fixed needs phase_center_ra_deg and phase_center_dec_deg "
            f"(ICRS, degrees) ({FIX})"
        )
    if kind != "fixed" and given:
        raise ConfigError(
            f"config key {given[0]}: used only with phase_center: fixed, not {kind} ({FIX})"
        )
    if kind != "per_integration" and settings["telescope"] != "dsa110":
        raise ConfigError(
            f"config key phase_center: {kind} is for telescope: dsa110; generic mode keeps the "
            f"files' phase centres (generic_phasing for unprojected data) ({FIX})"
        )
    if settings["ms_telescope_name"] != MS_TELESCOPE_NAME and settings["telescope"] != "dsa110":
        raise ConfigError(
            f"config key ms_telescope_name: {settings['ms_telescope_name']} is for telescope: "
            f"dsa110; generic mode keeps the files' telescope name ({FIX})"
        )
    dec = settings["phase_center_dec_deg"]
    if dec is not None and dec < LATITUDE_DEG - 90:
        raise ConfigError(
            f"config key phase_center_dec_deg: {dec} never rises at DSA-110 (latitude "
            f"{LATITUDE_DEG} deg: nothing below Dec {LATITUDE_DEG - 90:.2f} deg); a sign typo? "
            f"({FIX})"
        )


def refuse_reversed_window(settings: dict) -> None:
    """``start_time`` after ``end_time`` selects nothing: said as such, before discovery."""
    why = reversed_window(settings["start_time"], settings["end_time"])
    if why:
        raise ConfigError(f"config keys start_time and end_time: {why} ({FIX})")


def refuse_paths_casa_splits(settings: dict) -> None:
    """``join_method: concat`` runs ``casatasks.concat``, which splits the table names of its
    inputs' subtables on spaces (casatasks/private/mslisthelper.py): refused up front, with the
    key to change, rather than failing every join. The default join has no such limit."""
    if settings["join_method"] != "concat":
        return
    for key in ("scratch_root", "output_dir"):
        path = os.path.abspath(settings[key])
        if any(c.isspace() for c in path):
            raise ConfigError(
                f"config key {key}: {path!r} holds whitespace, which casatasks.concat cannot "
                "handle (it splits table names on spaces); use join_method=direct or a path "
                "without whitespace"
            )


def _check_finite(value, schema: dict, path=()) -> None:
    """ConfigError for the first NaN or infinity anywhere in the config (``--config
    tolerance_s=nan`` arrives as a float). Checked here because NaN passes every ``minimum`` and
    ``maximum`` of the schema (all comparisons with NaN are false)."""
    if isinstance(value, float) and not math.isfinite(value):
        key = ".".join(str(p) for p in path)
        raise ConfigError(
            f"config key {key}: {value!r} is not a finite number{_description(schema, path)} "
            f"({FIX})"
        )
    if isinstance(value, (dict, list)):
        for k, v in value.items() if isinstance(value, dict) else enumerate(value):
            _check_finite(v, schema, (*path, k))


def explain(error, schema: dict) -> str:
    """One line for a schema violation: the key, what is wrong, what is allowed, where to fix."""
    key = ".".join(str(p) for p in error.absolute_path)
    fix = FIX
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, allowed, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        where = f"in {key}" if key else "in the configuration"
        return f"unknown config key {', '.join(hints)} {where}; known keys: {', '.join(allowed)}"
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"config key {key}: {error.instance!r} is not allowed; allowed: {allowed} ({fix})"
    description = _description(schema, error.absolute_path)
    if error.validator == "pattern":
        what = f"{error.instance!r} is not in the expected form"
        return f"config key {key}: {what}{description} ({fix})"
    if error.validator == "format" and error.validator_value == "directory":
        return f"config key {key}: {error.instance!r}: {error.cause}; rename the directory ({fix})"
    if error.validator == "format" and str(error.cause) == NOT_A_TIMESTAMP:
        what = f"{error.instance!r} is not in the expected form YYYY-MM-DDTHH:MM:SS"
        return f"config key {key}: {what} ({fix})"
    if error.validator == "format":  # timestamp
        why = f" ({error.cause})" if error.cause else ""
        return f"config key {key}: {error.instance!r} is not a real time{why} ({fix})"
    return f"config key {key or '(top level)'}: {error.message}{description} ({fix})"


def _description(schema: dict, path) -> str:
    """The key's description from the schema, to say what it expects."""
    node = schema
    for part in path:
        node = node.get("properties", {}).get(part) if isinstance(node, dict) else None
        if node is None:
            return ""
    text = " ".join(str(node.get("description", "")).split())
    return f"; {key_help(text)}" if text else ""


def key_help(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."
