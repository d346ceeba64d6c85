"""Regenerate the committed sample data sets in ``fixtures/`` with ``ringfinder.synth``.

``fixtures/sample/``: messy gzipped CSV, about 3 500 contributors and 50 000 events, at least
three rings of every planted type and every honest lookalike; the README quick-start sample and
the main test fixture. ``fixtures/foreign/``: a small Parquet export with foreign column names.

Usage::

    python scripts/make_fixtures.py [ROOT]      # ROOT defaults to the repository's fixtures/
"""

from __future__ import annotations

import sys
from pathlib import Path

from ringfinder.synth import GenerateResult, Scenario, generate

SAMPLE_SEED = 20260101
SAMPLE = Scenario(
    contributors=3500,
    events_per_contributor=14.0,
    household_rate=0.08,
    campuses=1,
    campus_size=(160, 240),
    carrier_nat_ips=2,
    carrier_nat_users=(110, 180),
    cafes=3,
    cafe_size=(20, 50),
    vpn_exits=12,
    placeholder_rate=0.01,
    device_farms=3,
    device_farm_size=(10, 25),
    payout_consolidations=3,
    payout_consolidation_size=(5, 10),
    chains=3,
    chain_size=(4, 7),
    small_rings=4,
    small_ring_size=(3, 4),
    lockstep_rings=3,
    lockstep_size=(3, 5),
    lockstep_cosubmissions=(20, 30),
    timestamp_mix_rate=0.03,
    identifier_noise_rate=0.03,
    ipv4_mapped_rate=0.02,
    formatted_payout_rate=0.25,
    duplicate_rate=0.005,
    broken_rate=0.003,
)

FOREIGN_SEED = 7
FOREIGN = Scenario(
    contributors=500,
    events_per_contributor=10.0,
    campuses=0,
    carrier_nat_ips=1,
    carrier_nat_users=(40, 60),
    cafes=1,
    cafe_size=(20, 30),
    vpn_exits=5,
    device_farms=1,
    device_farm_size=(8, 12),
    payout_consolidations=1,
    payout_consolidation_size=(5, 6),
    chains=1,
    chain_size=(4, 5),
    small_rings=1,
    lockstep_rings=1,
    lockstep_size=(3, 4),
)
FOREIGN_COLUMNS = {
    "contributor_id": "worker_uuid",
    "event_time": "ts",
    "event_type": "action",
    "device_id": "fp_hash",
    "ip": "client_ip",
    "payout_account": "iban",
    "task_id": "job_id",
    "user_agent": "ua",
}


def make_fixtures(root: Path) -> dict[str, GenerateResult]:
    """Write ``root/sample`` and ``root/foreign``; return what each ``generate`` call wrote."""
    return {
        "sample": generate(root / "sample", scenario=SAMPLE, seed=SAMPLE_SEED, fmt="csv.gz"),
        "foreign": generate(
            root / "foreign",
            scenario=FOREIGN,
            seed=FOREIGN_SEED,
            fmt="parquet",
            columns=FOREIGN_COLUMNS,
        ),
    }


def main(argv: list[str]) -> None:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "fixtures"
    for name, result in make_fixtures(root).items():
        rings = ", ".join(f"{count} {kind}" for kind, count in result.rings.items())
        print(
            f"{name}: {result.rows} rows ({result.events} events), {result.contributors} "
            f"contributors, {result.fraud_contributors} in rings ({rings}) -> "
            f"{result.events_path.parent}"
        )


if __name__ == "__main__":
    main(sys.argv)
