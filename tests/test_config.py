"""Config loading and validation: every problem named by its dotted key, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringfinder.config import Config, build_config, load_config
from ringfinder.errors import ConfigError


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load() -> None:
    config = load_config()
    assert config == Config()
    assert config.score.threshold == 0.5
    assert config.detect.resolution == 1.0
    assert set(config.input.kinds) == {"device", "ip", "payment"}
    assert config.input.kinds["payment"].strong is True


def test_a_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
        [detect]
        resolution = 0.5
        [input.kinds.email]
        column = "email"
        normaliser = "email"
        """,
    )
    config = load_config(path)
    assert config.detect.resolution == 0.5
    assert config.detect.seed == 0
    assert config.score == Config().score
    # A [input.kinds] table replaces the default kinds with the ones it lists.
    assert set(config.input.kinds) == {"email"}
    assert config.input.kinds["email"].resolved_role("email") == "other"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[detect]\nresolutoin = 1.0\n", "detect.resolutoin: unknown key"),
        ("[bogus]\nx = 1\n", "bogus: unknown key"),
        (
            "[input.kinds.device]\ncolumn = 'd'\nhub_kap = 3\n",
            "input.kinds.device.hub_kap: unknown key",
        ),
        ("[detect]\nseed = 'abc'\n", "detect.seed = 'abc'"),
        ("[score]\nthreshold = 'high'\n", "score.threshold = 'high'"),
        ("[output]\nparquet = [1]\n", "output.parquet = [1]"),
        ("[detect]\nresolution = -1\n", "detect.resolution = -1: "),
        ("[score]\nthreshold = 1.5\n", "score.threshold = 1.5: "),
        ("[input]\nmax_bad_fraction = -0.1\n", "input.max_bad_fraction = -0.1: "),
        ("[input.kinds.ip]\ncolumn = 'ip'\nhub_cap = 1\n", "input.kinds.ip.hub_cap = 1: "),
        (
            "[input.kinds.ip]\ncolumn = 'ip'\nnormaliser = 'soundex'\n",
            "input.kinds.ip.normaliser = 'soundex'",
        ),
        ("[input.kinds.ip]\nnormaliser = 'ip'\n", "input.kinds.ip.column: required key is missing"),
        ("[input]\nsignup_events = ['signup', '']\n", "input.signup_events.1 = '': "),
    ],
)
def test_a_bad_value_names_its_dotted_key(tmp_path: Path, toml: str, expected: str) -> None:
    path = write_toml(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_range_errors_say_what_was_expected() -> None:
    with pytest.raises(ConfigError, match=r"detect\.resolution = -1: .*greater than 0"):
        build_config({"detect": {"resolution": -1}})


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
        unknown_section = 1
        [detect]
        resolution = -1
        seed = "x"
        [score]
        threshold = 2
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    for key in (
        "unknown_section: unknown key",
        "detect.resolution = -1",
        "detect.seed = 'x'",
        "score.threshold = 2",
    ):
        assert key in message
    assert message.count(";") == 3


def test_config_errors_are_value_errors_with_exit_code_2() -> None:
    with pytest.raises(ValueError) as info:
        build_config({"detect": {"resolution": 0}})
    assert isinstance(info.value, ConfigError)
    assert info.value.exit_code == 2


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[detect\nresolution = 1\n")
    with pytest.raises(ConfigError, match=r"not valid TOML"):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_config(path)


def test_no_kinds_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"input: .*at least one identifier kind"):
        build_config({"input": {"kinds": {}}})


@pytest.mark.parametrize(
    ("kinds", "expected"),
    [
        (
            {"email": {"column": "e"}, "EMAIL": {"column": "E"}},
            "'email' and 'EMAIL' differ only in case",
        ),
        ({" ": {"column": "e"}}, "a kind needs a name"),
    ],
)
def test_kind_names_must_be_distinct_column_names(kinds: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_config({"input": {"kinds": kinds}})
    assert str(info.value) == f"config: input.kinds: {expected}"


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(ValueError, match="frozen"):
        config.detect.seed = 3  # type: ignore[misc]
