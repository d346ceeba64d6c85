"""Pseudonymised output: no raw identifier in any output file, tokens stable per key."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from ringfinder import find_rings
from ringfinder.cli import main
from ringfinder.config import build_config, load_config
from ringfinder.errors import ConfigError
from ringfinder.privacy import KEY_VARIABLE, pseudonym

SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "sample"
EVENTS = SAMPLE / "events.csv.gz"
KEY = "a-test-key-of-enough-length"


def _config(**privacy: bool):
    data = load_config(SAMPLE / "config.toml").model_dump()
    data["privacy"] = {"pseudonymize": True, **privacy}
    return build_config(data)


def _output_text(folder: Path) -> str:
    """Every value in every output file, as text (Parquet decoded, not searched compressed)."""
    texts = []
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".parquet":
            texts.append(pd.read_parquet(path).astype(str).to_csv())
        elif path.is_file():
            texts.append(path.read_text(encoding="utf-8"))
    return "\n".join(texts)


@pytest.fixture(scope="module")
def plain_identifiers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """The IPs, payout accounts and device ids of ring members, from a run without privacy."""
    run = find_rings(EVENTS, SAMPLE / "config.toml", out_dir=tmp_path_factory.mktemp("plain") / "o")
    evidence = run.evidence
    return {
        kind: set(evidence.loc[evidence.kind == kind, "identifier"])
        for kind in ("ip", "payment", "device")
    }


def test_no_raw_identifier_reaches_any_output(
    plain_identifiers: dict[str, set[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    run = find_rings(EVENTS, _config(), out_dir=tmp_path / "private")
    text = _output_text(tmp_path / "private")
    assert run.rings["flagged"].any()
    for kind, values in plain_identifiers.items():
        assert values, kind
        leaked = [v for v in values if v in text]
        assert leaked == [], kind
    assert (
        run.evidence["identifier"].str.startswith(
            tuple(f"{k}_" for k in ("ip", "payment", "device"))
        )
    ).all()
    # Quarantined rows keep a token of their text, never the text.
    assert run.quarantine["raw"].str.fullmatch(r"row_[0-9a-f]{24}").all()


def test_tokens_are_stable_per_key_and_differ_across_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    first = find_rings(EVENTS, _config(pseudonymize_contributors=True))
    second = find_rings(EVENTS, _config(pseudonymize_contributors=True))
    assert first.members["contributor_id"].tolist() == second.members["contributor_id"].tolist()
    assert first.members["contributor_id"].str.startswith("contributor_").all()
    monkeypatch.setenv(KEY_VARIABLE, KEY + "-other")
    third = find_rings(EVENTS, _config(pseudonymize_contributors=True))
    assert set(first.members["contributor_id"]).isdisjoint(third.members["contributor_id"])
    # Same rings, only the names change.
    assert sorted(first.rings["size"]) == sorted(third.rings["size"])


def test_pseudonyms_are_keyed_and_domain_separated() -> None:
    key = KEY.encode()
    assert pseudonym(key, "ip", "10.0.0.1") == pseudonym(key, "ip", "10.0.0.1")
    assert pseudonym(key, "ip", "10.0.0.1") != pseudonym(key, "device", "10.0.0.1")
    assert pseudonym(key, "ip", "10.0.0.1") != pseudonym(b"another-key-0000", "ip", "10.0.0.1")


def test_a_pseudonymised_run_refuses_to_start_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_VARIABLE, raising=False)
    with pytest.raises(ConfigError, match=KEY_VARIABLE):
        find_rings(EVENTS, _config())
    config = tmp_path / "private.toml"
    config.write_text((SAMPLE / "config.toml").read_text() + "\n[privacy]\npseudonymize = true\n")
    result = CliRunner().invoke(
        main, ["detect", str(EVENTS), "--config", str(config), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"ringfinder: error: privacy.pseudonymize = true needs a secret of at least 16 characters "
        f"in the environment variable {KEY_VARIABLE}"
    ]
    assert not (tmp_path / "o").exists()


def test_known_bad_ids_match_pseudonymised_contributors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    plain = find_rings(EVENTS, SAMPLE / "config.toml")
    quiet = (
        plain.members[~plain.members["flagged"].astype(bool)].sort_values("contributor_id").iloc[0]
    )
    from ringfinder.pipeline import run_detect

    run = run_detect(
        [EVENTS], config=_config(pseudonymize_contributors=True), known_bad=[quiet.contributor_id]
    )
    token = pseudonym(KEY.encode(), "contributor", quiet.contributor_id)
    row = run.members.set_index("contributor_id").loc[token]
    assert "KNOWN_BAD" in row["reasons"].split(";")
    assert json.dumps(run.manifest["known_bad"]) == "1"
