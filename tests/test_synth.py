"""Tests of the scenario generator: determinism, ground truth, planted shapes and the mess.

The events are read back with a small reference reader written here, independent of
ringfinder's ingest: Python's csv module, trim + case-fold, IPv4-mapped and bracketed IPs
unwrapped, payout accounts stripped to upper-case letters and digits, and the five timestamp
formats parsed to epoch seconds.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import itertools
import re
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfinder.config import load_config
from ringfinder.errors import ConfigError
from ringfinder.synth import (
    BAD_TIMESTAMPS,
    DEVICE_PLACEHOLDERS,
    EVENT_COLUMNS,
    IP_PLACEHOLDERS,
    LABEL_COLUMNS,
    RING_TYPES,
    GenerateResult,
    Scenario,
    generate,
)

ROOT = Path(__file__).resolve().parents[1]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

# Small, but with every ring type and lookalike, and mess at rates high enough to measure.
SMALL = Scenario(
    contributors=2000,
    events_per_contributor=12.0,
    campuses=1,
    campus_size=(150, 170),
    carrier_nat_ips=1,
    carrier_nat_users=(100, 120),
    cafes=2,
    cafe_size=(20, 40),
    vpn_exits=8,
    placeholder_rate=0.03,
    device_farms=2,
    payout_consolidations=2,
    chains=2,
    small_rings=2,
    lockstep_rings=2,
    timestamp_mix_rate=0.05,
    identifier_noise_rate=0.05,
    ipv4_mapped_rate=0.05,
    formatted_payout_rate=0.3,
    duplicate_rate=0.02,
    broken_rate=0.01,
)
CLEAN = {  # every messiness knob off
    "timestamp_mix_rate": 0.0,
    "identifier_noise_rate": 0.0,
    "ipv4_mapped_rate": 0.0,
    "formatted_payout_rate": 0.0,
    "duplicate_rate": 0.0,
    "broken_rate": 0.0,
}
FOREIGN = {
    "contributor_id": "worker_uuid",
    "event_time": "ts",
    "event_type": "action",
    "device_id": "fp_hash",
    "ip": "client_ip",
    "payout_account": "iban",
    "task_id": "job_id",
    "user_agent": "ua",
}


# ---------------------------------------------------------------- reference reader


def norm_text(value: str) -> str:
    return value.strip().casefold()


def norm_ip(value: str) -> str:
    value = value.strip().casefold()
    if value.startswith("["):
        value = value[1 : value.index("]")]
    return value.removeprefix("::ffff:")


def norm_payout(value: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", value).upper()


def parse_time(value: str) -> int | None:
    if value.isdigit():
        return int(value) // 1000 if len(value) > 11 else int(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


@dataclass
class Data:
    """A folder written by ``generate``, read back."""

    folder: Path
    result: GenerateResult | None  # None for committed fixtures
    header: list[str]
    raw: list[list[str]]  # every data line, as the csv module splits it
    events: list[dict]  # well-formed, parseable, de-duplicated rows, normalised
    labels: dict[str, dict[str, str]]

    @property
    def written(self) -> GenerateResult:
        """What ``generate`` reported (only for freshly generated data)."""
        assert self.result is not None
        return self.result


def read_raw(path: Path) -> tuple[list[str], list[list[str]]]:
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        rows = [["" if v is None else v for v in row.values()] for row in table.to_pylist()]
        return table.column_names, rows
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    return lines[0], lines[1:]


def read_data(source: GenerateResult | Path) -> Data:
    """Read what a ``generate`` call wrote, or what a fixture folder holds."""
    result = source if isinstance(source, GenerateResult) else None
    folder = source.events_path.parent if isinstance(source, GenerateResult) else source
    header, raw = read_raw(next(folder.glob("events.*")))
    events, seen = [], set()
    for row in raw:
        if len(row) != len(EVENT_COLUMNS) or tuple(row) in seen:
            continue
        seen.add(tuple(row))
        cid, when, kind, device, ip, payout, task, agent = row
        at = parse_time(when)
        if not cid.strip() or at is None:
            continue
        events.append(
            {
                "contributor": norm_text(cid),
                "time": at,
                "type": kind,
                "device": norm_text(device),
                "ip": norm_ip(ip),
                "payout": norm_payout(payout),
                "task": task,
                "agent": agent,
            }
        )
    with (folder / "labels.csv").open(newline="", encoding="utf-8") as handle:
        labels = {row["contributor_id"]: row for row in csv.DictReader(handle)}
    return Data(folder, result, header, raw, events, labels)


def by_contributor(data: Data, key: str) -> dict[str, set[str]]:
    """Contributor -> the real (non-placeholder, non-empty) identifiers of one kind."""
    placeholders = {p.casefold() for p in DEVICE_PLACEHOLDERS + IP_PLACEHOLDERS}
    used = defaultdict(set)
    for e in data.events:
        if e[key] and e[key] not in placeholders:
            used[e["contributor"]].add(e[key])
    return used


def users_of(data: Data, key: str) -> dict[str, set[str]]:
    """Identifier -> contributors using it."""
    users = defaultdict(set)
    for contributor, values in by_contributor(data, key).items():
        for value in values:
            users[value].add(contributor)
    return users


def rings(data: Data) -> dict[str, list[str]]:
    members = defaultdict(list)
    for contributor, label in data.labels.items():
        if label["label"] == "fraud":
            members[label["ring_id"]].append(contributor)
    return members


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Data:
    return read_data(generate(tmp_path_factory.mktemp("small"), scenario=SMALL, seed=3, fmt="csv"))


@pytest.fixture(scope="module")
def sample() -> Data:
    return read_data(ROOT / "fixtures" / "sample")


def load_make_fixtures() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_fixtures", ROOT / "scripts/make_fixtures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("fmt", ["parquet", "csv", "csv.gz"])
def test_same_seed_gives_the_same_bytes(tmp_path: Path, fmt: str) -> None:
    scenario = replace(SMALL, contributors=800, campuses=0, carrier_nat_users=(50, 60))
    first = generate(tmp_path / "a", scenario=scenario, seed=11, fmt=fmt)  # type: ignore[arg-type]
    second = generate(tmp_path / "b", scenario=scenario, seed=11, fmt=fmt)  # type: ignore[arg-type]
    for one, two in zip(
        (first.events_path, first.labels_path, first.config_path),
        (second.events_path, second.labels_path, second.config_path),
        strict=True,
    ):
        assert one.read_bytes() == two.read_bytes(), one.name
    assert first == replace(
        second,
        events_path=first.events_path,
        labels_path=first.labels_path,
        config_path=first.config_path,
    )


def test_another_seed_gives_other_data(tmp_path: Path) -> None:
    scenario = replace(SMALL, contributors=800, campuses=0, carrier_nat_users=(50, 60))
    one = read_data(generate(tmp_path / "a", scenario=scenario, seed=1, fmt="csv"))
    two = read_data(generate(tmp_path / "b", scenario=scenario, seed=2, fmt="csv"))
    assert set(one.labels).isdisjoint(two.labels)
    assert one.raw[:50] != two.raw[:50]


def test_committed_fixtures_are_up_to_date(tmp_path: Path) -> None:
    load_make_fixtures().make_fixtures(tmp_path)
    for name in ("sample", "foreign"):
        for written in sorted((tmp_path / name).iterdir()):
            committed = ROOT / "fixtures" / name / written.name
            assert committed.read_bytes() == written.read_bytes(), (
                f"rerun make_fixtures: {committed}"
            )


# ---------------------------------------------------------------- ground truth


def test_labels_cover_exactly_the_contributors_in_the_events(small: Data) -> None:
    assert list(next(iter(small.labels.values()))) == list(LABEL_COLUMNS)
    assert set(small.labels) == {e["contributor"] for e in small.events}
    assert len(small.labels) == small.written.contributors == SMALL.contributors
    fraud = [label for label in small.labels.values() if label["label"] == "fraud"]
    assert len(fraud) == small.written.fraud_contributors
    for label in small.labels.values():
        assert re.fullmatch(r"c_[0-9a-f]{8}", label["contributor_id"])
        if label["label"] == "fraud":
            prefix = RING_TYPES[label["ring_type"]]
            assert re.fullmatch(rf"R-{prefix}-\d{{3}}", label["ring_id"])
            assert label["role"] == label["ring_type"]
        else:
            assert label["label"] == "benign" and label["ring_id"] == label["ring_type"] == ""


def test_every_contributor_signs_up_once_and_first(small: Data) -> None:
    events = defaultdict(list)
    for e in small.events:
        events[e["contributor"]].append(e)
    for contributor, mine in events.items():
        signups = [e for e in mine if e["type"] == "signup"]
        assert len(signups) == 1, contributor
        assert all(e["time"] > signups[0]["time"] for e in mine if e is not signups[0])
        assert signups[0]["payout"], contributor
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    assert all(start <= e["time"] < start + SMALL.days * 86400 for e in small.events)
    for e in small.events:
        assert bool(e["payout"]) == (e["type"] in ("signup", "payout_change"))
        assert bool(e["task"]) == (e["type"] == "task_submit")
        assert e["agent"]


def test_rings_have_the_configured_counts_and_sizes(small: Data) -> None:
    members = rings(small)
    counts = Counter(small.labels[m[0]]["ring_type"] for m in members.values())
    assert counts == {
        "device_farm": 2,
        "payout_consolidation": 2,
        "chain": 2,
        "small_ring": 2,
        "lockstep": 2,
    }
    assert small.written.rings == dict(counts)
    for ring_id, people in members.items():
        low, high = getattr(
            SMALL,
            {
                "device_farm": "device_farm_size",
                "payout_consolidation": "payout_consolidation_size",
                "chain": "chain_size",
                "small_ring": "small_ring_size",
                "lockstep": "lockstep_size",
            }[small.labels[people[0]]["ring_type"]],
        )
        assert low <= len(people) <= high, ring_id


def test_benign_contributors_never_share_a_payout_account(small: Data) -> None:
    for account, users in users_of(small, "payout").items():
        if len(users) > 1:
            ring_ids = {small.labels[u]["ring_id"] for u in users}
            assert len(ring_ids) == 1 and "" not in ring_ids, account


def test_payout_accounts_are_ibans_with_valid_check_digits(small: Data) -> None:
    accounts = {e["payout"] for e in small.events if e["payout"]}
    assert len(accounts) > len(small.labels)  # own accounts, new ones, collectors
    for account in accounts:
        assert re.fullmatch(r"(DE|GB|NL|ES)\d\d[0-9A-Z]{14,20}", account), account
        digits = "".join(str(int(c, 36)) for c in account[4:] + account[:4])
        assert int(digits) % 97 == 1, account


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), contributors=st.integers(300, 700))
def test_ground_truth_holds_for_any_seed(seed: int, contributors: int) -> None:
    scenario = replace(SMALL, contributors=contributors, campuses=0, carrier_nat_users=(30, 40))
    with tempfile.TemporaryDirectory() as folder:
        data = read_data(generate(Path(folder), scenario=scenario, seed=seed, fmt="csv"))
    assert set(data.labels) == {e["contributor"] for e in data.events}
    signups = Counter(e["contributor"] for e in data.events if e["type"] == "signup")
    assert set(signups.values()) == {1}
    for users in users_of(data, "payout").values():  # shared accounts: one ring's members
        ring_ids = {data.labels[u]["ring_id"] for u in users}
        assert len(users) == 1 or (len(ring_ids) == 1 and "" not in ring_ids)
    pairs = cosubmissions(data)
    for ring_id, members in rings(data).items():
        if ring_id.startswith("R-lockstep-"):
            assert all(
                pairs[pair] >= SMALL.lockstep_cosubmissions[0]
                for pair in itertools.combinations(sorted(members), 2)
            )


def test_households_share_a_home_ip_and_family_computers_a_device(small: Data) -> None:
    roles = {c: label["role"] for c, label in small.labels.items()}
    home = {"household", "family_computer"}
    shared_ips = [
        u
        for u in users_of(small, "ip").values()
        if len(u) > 1 and u <= {c for c in u if roles[c] in home}
    ]
    assert len(shared_ips) >= 10
    assert all(2 <= len(u) <= 4 for u in shared_ips)
    for device, users in users_of(small, "device").items():
        household_users = {u for u in users if roles[u] in home}
        if len(household_users) > 1:
            assert household_users == users and len(users) <= 4, device
            assert {roles[u] for u in users} == {"family_computer"}, device
    family = [c for c, r in roles.items() if r == "family_computer"]
    devices = users_of(small, "device")
    assert family and all(
        any(len(devices[d]) > 1 for d in by_contributor(small, "device")[c]) for c in family
    )


def test_lookalike_groups_share_infrastructure_but_nothing_personal(small: Data) -> None:
    roles = {c: label["role"] for c, label in small.labels.items()}
    ip_users = users_of(small, "ip")
    campus = max(ip_users.values(), key=lambda u: sum(roles[c] == "campus" for c in u))
    assert sum(roles[c] == "campus" for c in campus) >= 150
    nat = max(ip_users.values(), key=lambda u: sum(roles[c] == "carrier_nat" for c in u))
    assert sum(roles[c] == "carrier_nat" for c in nat) >= 100
    device_users = users_of(small, "device")
    cafe_pcs = [u for u in device_users.values() if sum(roles[c] == "cafe" for c in u) >= 20]
    assert len(cafe_pcs) == 2
    for device, users in device_users.items():  # apart from café PCs, campus and café
        if users not in cafe_pcs and len(users) > 1:  # users share no device
            assert not {roles[u] for u in users} & {"campus", "cafe", "carrier_nat", "vpn"}, device


def test_placeholders_come_from_broken_clients_at_the_configured_rate(small: Data) -> None:
    device_ph = {p.casefold() for p in DEVICE_PLACEHOLDERS}
    ip_ph = {p.casefold() for p in IP_PLACEHOLDERS}
    with_placeholder = [e for e in small.events if e["device"] in device_ph or e["ip"] in ip_ph]
    assert {small.labels[e["contributor"]]["role"] for e in with_placeholder} == {"placeholder"}
    share = len(with_placeholder) / len(small.events)
    assert 0.5 * SMALL.placeholder_rate < share < 1.6 * SMALL.placeholder_rate
    placeholder_events = [
        e for e in small.events if small.labels[e["contributor"]]["role"] == "placeholder"
    ]
    assert len(placeholder_events) == len(with_placeholder)


# ---------------------------------------------------------------- planted rings


def test_device_farms_burst_share_few_devices_and_pay_out_to_few_accounts(small: Data) -> None:
    devices, payouts = by_contributor(small, "device"), by_contributor(small, "payout")
    signup = {e["contributor"]: e["time"] for e in small.events if e["type"] == "signup"}
    for ring_id, members in rings(small).items():
        if not ring_id.startswith("R-farm-"):
            continue
        assert max(signup[m] for m in members) - min(signup[m] for m in members) <= 6 * 3600
        use = Counter(d for m in members for d in devices[m])
        farm_devices = [d for d, count in use.items() if count >= len(members) / 2]
        assert 2 <= len(farm_devices) <= 5
        assert 1 <= len({p for m in members for p in payouts[m]}) <= 3
        assert len({e["ip"] for e in small.events if e["contributor"] in members}) >= 5


def test_payout_consolidations_switch_to_collectors(small: Data) -> None:
    devices, ips = by_contributor(small, "device"), by_contributor(small, "ip")
    for ring_id, members in rings(small).items():
        if not ring_id.startswith("R-payout-"):
            continue
        changes = [
            e for e in small.events if e["contributor"] in members and e["type"] == "payout_change"
        ]
        assert len(changes) == len(members)
        assert 1 <= len({e["payout"] for e in changes}) <= 2
        for one, two in itertools.combinations(members, 2):
            assert not devices[one] & devices[two] and not ips[one] & ips[two]


def test_chains_link_through_different_kinds(small: Data) -> None:
    kinds = {
        "device": users_of(small, "device"),
        "ip": users_of(small, "ip"),
        "payout": users_of(small, "payout"),
    }
    for ring_id, members in rings(small).items():
        if not ring_id.startswith("R-chain-"):
            continue
        ring = set(members)
        links = set()  # (kind, pair) through identifiers used by ring members only
        for kind, users in kinds.items():
            for group in users.values():
                if len(group) > 1 and group <= ring:
                    links |= {(kind, pair) for pair in itertools.combinations(sorted(group), 2)}
        assert {kind for kind, _ in links} == {"device", "ip", "payout"} or len(members) < 4
        # the private links alone connect the whole ring
        reached, frontier = {members[0]}, [members[0]]
        while frontier:
            here = frontier.pop()
            for _, (a, b) in links:
                for there in (b,) if a == here else (a,) if b == here else ():
                    if there not in reached:
                        reached.add(there)
                        frontier.append(there)
        assert reached == ring, ring_id
        # and every member also uses a popular honest identifier (carrier NAT IP)
        assert all(
            any(len(kinds["ip"][ip]) >= 50 for ip in by_contributor(small, "ip")[m])
            for m in members
        )


def cosubmissions(data: Data, window: int = 10) -> Counter[tuple[str, str]]:
    """Pairs of contributors -> times they submitted the same task within ``window`` seconds."""
    by_task = defaultdict(list)
    for e in data.events:
        if e["type"] == "task_submit":
            by_task[e["task"]].append((e["time"], e["contributor"]))
    pairs: Counter[tuple[str, str]] = Counter()
    for submissions in by_task.values():
        submissions.sort()
        for i, (at, who) in enumerate(submissions):
            for later, other in submissions[i + 1 :]:
                if later - at > window:
                    break
                if other != who:
                    pairs[tuple(sorted((who, other)))] += 1
    return pairs


def test_lockstep_rings_share_nothing_but_submit_together(small: Data) -> None:
    pairs = cosubmissions(small)
    kinds = [by_contributor(small, k) for k in ("device", "ip", "payout")]
    lockstep_pairs = set()
    for ring_id, members in rings(small).items():
        if not ring_id.startswith("R-lockstep-"):
            continue
        for one, two in itertools.combinations(sorted(members), 2):
            assert all(not used[one] & used[two] for used in kinds), ring_id
            assert pairs[(one, two)] >= SMALL.lockstep_cosubmissions[0]
            lockstep_pairs.add((one, two))
    others = [count for pair, count in pairs.items() if pair not in lockstep_pairs]
    assert max(others, default=0) < 5


# ---------------------------------------------------------------- mess


def test_mess_appears_at_the_configured_rates(small: Data) -> None:
    result, rows = small.written, small.raw
    assert len(rows) == result.rows == result.events + result.duplicate_rows + result.broken_rows
    assert result.duplicate_rows == round(SMALL.duplicate_rate * result.events)
    assert result.broken_rows == round(SMALL.broken_rate * result.events)
    full = [r for r in rows if len(r) == len(EVENT_COLUMNS)]
    ragged = len(rows) - len(full)
    no_id = sum(1 for r in full if not r[0])
    bad_time = sum(1 for r in full if r[1] in BAD_TIMESTAMPS)
    assert ragged > 0 and no_id > 0 and bad_time > 0
    assert ragged + no_id + bad_time == result.broken_rows
    exact_duplicates = len(full) - len({tuple(r) for r in full})
    assert exact_duplicates >= result.duplicate_rows

    def share(flags: list[bool]) -> float:
        return sum(flags) / len(flags)

    def near(measured: float, rate: float) -> bool:
        return 0.75 * rate < measured < 1.25 * rate

    clean = [r for r in full if r[0] and r[1] not in BAD_TIMESTAMPS]
    assert near(share([not ISO.match(r[1]) for r in clean]), SMALL.timestamp_mix_rate)
    assert near(share([r[0] != r[0].strip().lower() for r in clean]), SMALL.identifier_noise_rate)
    ipv4 = [
        r[4] for r in clean if re.search(r"\d+\.\d+\.\d+\.\d+", r[4]) and r[4].strip() != "0.0.0.0"
    ]
    assert near(share(["::ffff:" in ip or "]:" in ip for ip in ipv4]), SMALL.ipv4_mapped_rate)
    payouts = [r[5] for r in clean if r[5]]
    grouped = share([bool(re.search(r"[ -]\w{4}[ -]", p)) for p in payouts])
    assert near(grouped, SMALL.formatted_payout_rate)
    formats = Counter(
        "epoch"
        if r[1].isdigit()
        else "space"
        if " " in r[1]
        else "offset"
        if "+" in r[1][10:] or r[1].count("-") > 2
        else "iso"
        for r in clean
    )
    assert formats["epoch"] and formats["space"] and formats["offset"]


def test_mess_does_not_change_the_events(tmp_path: Path) -> None:
    scenario = replace(SMALL, contributors=800, campuses=0, carrier_nat_users=(50, 60))
    messy = read_data(generate(tmp_path / "messy", scenario=scenario, seed=5, fmt="csv"))
    clean = read_data(
        generate(
            tmp_path / "clean",
            scenario=replace(scenario, **CLEAN),  # type: ignore[arg-type]
            seed=5,
            fmt="csv",
        )
    )
    assert all(ISO.match(r[1]) and r[0] == r[0].strip().lower() for r in clean.raw)

    def key(e: dict) -> tuple:
        return tuple(
            e[k] for k in ("contributor", "time", "type", "device", "ip", "payout", "task")
        )

    assert sorted(map(key, messy.events)) == sorted(map(key, clean.events))
    assert messy.labels == clean.labels


# ---------------------------------------------------------------- config and columns


def test_config_maps_the_columns_written(small: Data) -> None:
    config = load_config(small.folder / "config.toml")
    assert small.header == list(EVENT_COLUMNS)
    assert config.input.contributor == "contributor_id" and config.input.target == "task_id"
    assert {kind.column for kind in config.input.kinds.values()} == {
        "device_id",
        "ip",
        "payout_account",
    }
    assert config.input.format == "csv"
    for column in (config.input.contributor, config.input.timestamp, config.input.event_type):
        assert column in small.header


def test_renamed_columns_imitate_a_foreign_export(tmp_path: Path) -> None:
    scenario = replace(SMALL, contributors=600, campuses=0, carrier_nat_users=(40, 50))
    result = generate(tmp_path, scenario=scenario, seed=2, fmt="parquet", columns=FOREIGN)
    table = pq.read_table(result.events_path)
    assert table.column_names == [FOREIGN[c] for c in EVENT_COLUMNS]
    assert all(str(field.type) == "string" for field in table.schema)
    config = load_config(result.config_path)
    assert config.input.format == "parquet"
    assert (config.input.contributor, config.input.timestamp, config.input.event_type) == (
        "worker_uuid",
        "ts",
        "action",
    )
    assert config.input.target == "job_id"
    assert {k: v.column for k, v in config.input.kinds.items()} == {
        "device": "fp_hash",
        "ip": "client_ip",
        "payment": "iban",
    }


@pytest.mark.parametrize(
    "columns, message",
    [
        ({"worker": "x"}, "'worker' is not an event column"),
        ({"ip": " "}, "columns.ip: the new name is empty"),
        ({"ip": "device_id"}, "two columns would get the same name"),
    ],
)
def test_bad_column_renaming_is_a_config_error(tmp_path: Path, columns: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        generate(tmp_path, scenario=replace(SMALL, contributors=600, campuses=0), columns=columns)
    assert not list(tmp_path.iterdir())


def test_bad_scenarios_name_every_bad_knob(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        Scenario(contributors=10, chain_size=(2, 9), cafes=-1, vpn_share=2.0, start="Jan 1")
    for knob in (
        "contributors = 10",
        "chain_size = (2, 9)",
        "cafes = -1",
        "vpn_share = 2.0",
        "start = 'Jan 1'",
    ):
        assert knob in str(error.value)
    with pytest.raises(ConfigError, match="need .* contributors but contributors = 1000"):
        generate(tmp_path, scenario=Scenario(contributors=1000, campuses=10))
    with pytest.raises(ConfigError, match="fmt = 'xlsx'"):
        generate(tmp_path, fmt="xlsx")  # type: ignore[arg-type]


# ---------------------------------------------------------------- committed sample


def test_sample_fixture_has_every_ring_type_and_lookalike(sample: Data) -> None:
    assert 3000 <= len(sample.labels) <= 4000 and 40_000 <= len(sample.raw) <= 80_000
    types = Counter(sample.labels[m[0]]["ring_type"] for m in rings(sample).values())
    assert set(types) == set(RING_TYPES) and min(types.values()) >= 3
    roles = Counter(label["role"] for label in sample.labels.values())
    assert roles["household"] + roles["family_computer"] >= 20 and roles["family_computer"] > 0
    assert roles["placeholder"] > 0 and roles["vpn"] > 0
    role = {c: label["role"] for c, label in sample.labels.items()}
    ip_users = users_of(sample, "ip").values()
    assert max(sum(role[c] == "campus" for c in u) for u in ip_users) >= 150
    assert max(sum(role[c] == "carrier_nat" for c in u) for u in ip_users) >= 100
    cafes = [
        u for u in users_of(sample, "device").values() if sum(role[c] == "cafe" for c in u) >= 20
    ]
    assert len(cafes) >= 2 and all(len(u) <= 55 for u in cafes)
    config = load_config(sample.folder / "config.toml")
    assert config.input.target in sample.header


def test_foreign_fixture_is_parquet_with_foreign_names() -> None:
    foreign = read_data(ROOT / "fixtures" / "foreign")
    config = load_config(foreign.folder / "config.toml")
    assert foreign.header == list(load_make_fixtures().FOREIGN_COLUMNS.values())
    mapped = [config.input.contributor, config.input.timestamp, config.input.event_type]
    mapped += [config.input.target] + [kind.column for kind in config.input.kinds.values()]
    assert set(mapped) <= set(foreign.header)
    assert 400 <= len(foreign.labels) <= 600
    assert {label["ring_type"] for label in foreign.labels.values()} - {""} == set(RING_TYPES)


def test_a_scenario_without_households_generates(tmp_path: Path) -> None:
    result = generate(tmp_path, scenario=Scenario(contributors=2000, household_rate=0.0), seed=1)
    with result.labels_path.open(newline="") as handle:
        roles = [row["role"] for row in csv.DictReader(handle)]
    assert result.contributors == len(roles) == 2000
    assert not {"household", "family_computer"} & set(roles)


def test_csv_lines_are_written_from_chunked_columns() -> None:
    """Big columns come as chunked arrays (30M events' labels did): every chunk is written."""
    import pyarrow as pa

    from ringfinder.synth.write import _write_csv_lines

    written: list[bytes] = []
    ids = pa.chunked_array([["c_1", "c_2"], ["c_3"]])
    labels = pa.chunked_array([["fraud"], ["benign", "benign"]])
    _write_csv_lines(lambda view: written.append(bytes(view)), [ids, labels])
    assert b"".join(written) == b"c_1,fraud\nc_2,benign\nc_3,benign\n"
