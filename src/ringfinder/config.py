"""Config: pydantic models for the TOML file, and ``load_config``.

Unknown keys are errors, and every problem is reported at once, named by its dotted key.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ringfinder.errors import ConfigError
from ringfinder.schema import DEVICE, IP, PAYMENT, Reason

MEMORY_SIZE = re.compile(r"\d+(\.\d+)?\s*([kmgt]i?b|b|bytes)", re.IGNORECASE)
Normaliser = Literal["ip", "ip_prefix", "device", "payment", "email", "phone", "text"]
Role = Literal["device", "ip", "payment", "other"]

DEFAULT_PLACEHOLDERS = [
    "",
    "unknown",
    "null",
    "none",
    "nil",
    "nan",
    "n/a",
    "na",
    "undefined",
    "-",
    "0",
    "0.0.0.0",
    "::",
    "127.0.0.1",
    "00000000-0000-0000-0000-000000000000",
    "default",
    "test",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KindConfig(Strict):
    """One identifier kind: where it comes from, how it is cleaned and what sharing it means."""

    column: str = Field(min_length=1)
    normaliser: Normaliser = "text"
    weight: float = Field(default=1.0, gt=0)
    role: Role | None = None
    hub_cap: int = Field(default=50, ge=2)
    strong: bool = False

    def resolved_role(self, name: str) -> Role:
        """The scoring role: explicit, else taken from the kind's name, else ``other``."""
        if self.role is not None:
            return self.role
        return name if name in (DEVICE, IP, PAYMENT) else "other"  # type: ignore[return-value]


def _default_kinds() -> dict[str, KindConfig]:
    return {
        DEVICE: KindConfig(column="device_id", normaliser="device", weight=1.0, hub_cap=60),
        IP: KindConfig(column="ip", normaliser="ip", weight=0.3, hub_cap=25),
        PAYMENT: KindConfig(
            column="payout_account", normaliser="payment", weight=3.0, hub_cap=200, strong=True
        ),
    }


class InputConfig(Strict):
    """Column mapping and parsing rules for the event export."""

    format: Literal["auto", "csv", "parquet", "jsonl"] = "auto"
    contributor: str = Field(default="contributor_id", min_length=1)
    contributor_ignore_case: bool = True
    timestamp: str = Field(default="event_time", min_length=1)
    event_type: str = "event_type"
    target: str = ""
    signup_events: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["signup"]
    )
    placeholders: list[str] = Field(default_factory=lambda: list(DEFAULT_PLACEHOLDERS))
    email_strip_plus: bool = True
    email_dotless_domains: list[str] = Field(
        default_factory=lambda: ["gmail.com", "googlemail.com"]
    )
    max_bad_fraction: float = Field(default=0.05, ge=0, le=1)
    kinds: dict[str, KindConfig] = Field(default_factory=_default_kinds)

    @model_validator(mode="after")
    def _kinds_present(self) -> InputConfig:
        if not self.kinds:
            raise ValueError("at least one identifier kind is needed")
        return self

    @field_validator("kinds")
    @classmethod
    def _kind_names(cls, kinds: dict[str, KindConfig]) -> dict[str, KindConfig]:
        """Names are columns' names too (``raw_<kind>``): non-blank, and unique in any case."""
        seen: dict[str, str] = {}
        for name in kinds:
            if not name.strip():
                raise ValueError("a kind needs a name")
            if name.lower() in seen:
                raise ValueError(f"{seen[name.lower()]!r} and {name!r} differ only in case")
            seen[name.lower()] = name
        return kinds


class GraphConfig(Strict):
    """Hub suppression and projection weights."""

    infrastructure_min_contributors: int = Field(default=8, ge=2)
    infrastructure_own_share: float = Field(default=0.6, gt=0, le=1)
    infrastructure_weight: float = Field(default=0.0, ge=0, le=1)
    min_pair_weight: float = Field(default=0.0, ge=0)
    solid_ip_max_contributors: int = Field(default=4, ge=2)
    lockstep_window_seconds: float = Field(default=30.0, gt=0)
    lockstep_min_targets: int = Field(default=5, ge=2)
    lockstep_min_share: float = Field(default=0.3, ge=0, le=1)
    lockstep_max_bucket: int = Field(default=30, ge=2)
    lockstep_weight: float = Field(default=2.0, gt=0)


class DetectConfig(Strict):
    """Community detection (Leiden) and the strong-link rules."""

    resolution: float = Field(default=1.0, gt=0)
    leiden_min_size: int = Field(default=8, ge=2)
    iterations: int = Field(default=-1)
    min_ring_size: int = Field(default=2, ge=2)
    split_weak_links: bool = True
    seed: int = 0


class Band(Strict):
    """One decision band: members whose score reaches ``min_score`` get ``action``.

    Bands are listed in order under ``[[score.bands]]`` and the first match wins. With
    ``reasons_any`` the band also needs one of those reason codes among the member's reasons.
    """

    action: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)
    min_score: float = Field(ge=0, le=1)
    score: Literal["ring_score", "member_score"] = "ring_score"
    reasons_any: list[Reason] = Field(default_factory=list)


class ScoreConfig(Strict):
    """Evidence weights and the flag threshold."""

    threshold: float = Field(default=0.5, ge=0, le=1)
    burst_window_hours: float = Field(default=48.0, gt=0)
    weight_shared_payout: float = Field(default=0.55, ge=0, le=1)
    weight_device_farm: float = Field(default=0.6, ge=0, le=1)
    weight_shared_device: float = Field(default=0.25, ge=0, le=1)
    weight_shared_ip: float = Field(default=0.05, ge=0, le=1)
    weight_shared_other: float = Field(default=0.2, ge=0, le=1)
    weight_signup_burst: float = Field(default=0.3, ge=0, le=1)
    weight_closed_world: float = Field(default=0.25, ge=0, le=1)
    weight_multi_kind: float = Field(default=0.25, ge=0, le=1)
    weight_lockstep: float = Field(default=0.7, ge=0, le=1)
    weight_known_bad: float = Field(default=0.5, ge=0, le=1)
    bands: list[Band] = Field(default_factory=list)
    weak_ceiling: float = Field(default=0.45, ge=0, le=1)
    infrastructure_damping: float = Field(default=0.5, ge=0, le=1)
    independent_payout_damping: float = Field(default=0.5, ge=0, le=1)


class OutputConfig(Strict):
    """What `detect` writes."""

    parquet: bool = True
    history: str = ""
    html: bool = True
    max_ring_pages: int = Field(default=300, ge=0)


class PrivacyConfig(Strict):
    """Pseudonymised output; the key comes from RINGFINDER_HMAC_KEY, never from a file."""

    pseudonymize: bool = False
    pseudonymize_contributors: bool = False


class ResourceConfig(Strict):
    """Where the graph projection runs, and limits for the embedded DuckDB engine."""

    memory_limit: str = ""
    threads: int = Field(default=0, ge=0, le=256)
    temp_directory: str = ""
    engine: Literal["duckdb", "spark"] = "duckdb"
    spark_master: str = Field(default="local[*]", min_length=1)
    spark_staging_dir: str = ""

    @field_validator("memory_limit")
    @classmethod
    def _size(cls, value: str) -> str:
        if value and not MEMORY_SIZE.fullmatch(value.strip()):
            raise ValueError("expected a size such as 8GB or 512MiB")
        return value


class Config(Strict):
    """The whole resolved configuration of a run."""

    input: InputConfig = Field(default_factory=InputConfig)
    graph: GraphConfig = Field(default_factory=GraphConfig)
    detect: DetectConfig = Field(default_factory=DetectConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    resources: ResourceConfig = Field(default_factory=ResourceConfig)


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    value = error.get("input")
    message = message.removeprefix("Value error, ")
    if isinstance(value, dict):
        return f"{key}: {message}"
    return f"{key} = {value!r}: {message}"


def build_config(data: dict[str, Any], *, source: str = "config") -> Config:
    """Validate a config mapping; raise ``ConfigError`` naming every bad key at once."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors())  # type: ignore[arg-type]
        raise ConfigError(f"{source}: {problems}") from None


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate a TOML config; ``None`` gives the documented defaults.

    Examples
    --------
    >>> load_config().score.threshold
    0.5
    """
    if path is None:
        return Config()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return build_config(data, source=str(path))
