"""The run's settings: the configuration validated once (:mod:`dsa110ms.schema`) into a frozen
:class:`Settings`.

Adding a config key: its entry in dsa110ms/schema.yaml, its :class:`Settings` field
(tests/test_config.py checks they agree) and its one consumer. Every process of a run gets the
same :class:`Settings`: the Snakefile validates the config, jobs receive it through one channel
(:class:`dsa110ms.run.jobs.JobContext`), without importing the schema validator.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Settings:
    """Every config key, validated (dsa110ms/schema.yaml says what each means; times are UTC
    ``YYYY-MM-DDTHH:MM:SS``, ``tolerance_s`` in seconds). Directories are as given (relative ones
    to the working directory)."""

    input_dir: str
    output_dir: str
    scratch_root: str
    log_dir: str
    report_dir: str
    inventory: str
    input_listing: str
    tolerance_s: float
    start_time: str | None
    end_time: str | None
    groups: list[str] | None
    incomplete_groups: str
    duplicate_subbands: str
    changed_inputs: str
    telescope: str
    generic_phasing: str
    ms_telescope_name: str
    phase_center: str
    phase_center_ra_deg: float | None
    phase_center_dec_deg: float | None
    spw_layout: str
    join_method: str
    imaging_columns: str
    keep_autocorrelations: bool
    concat_retries: int
    simulate: dict
    metrics_dir: str
    alert_command: str | None

    @classmethod
    def from_config(cls, config: dict) -> Settings:
        """Validate ``config`` (ConfigError with one line if it is wrong)."""
        from dsa110ms.schema import validate_config

        return cls(**validate_config(config))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """Settings validated by another process of the run (no schema needed)."""
        return cls(**json.loads(text))
