"""``generate``: the one place the population, events, mess, strings and files meet."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import get_args

import numpy as np

from ringfinder.errors import ConfigError
from ringfinder.synth.cells import event_batches
from ringfinder.synth.events import draw_events
from ringfinder.synth.mess import add_mess
from ringfinder.synth.population import World
from ringfinder.synth.render import render_identifiers
from ringfinder.synth.scenario import (
    RING_TYPES,
    Format,
    GenerateResult,
    Scenario,
    column_names,
)
from ringfinder.synth.write import csv_cell, write_config, write_events, write_labels

logger = logging.getLogger(__name__)


def generate(
    out_dir: Path,
    *,
    scenario: Scenario = Scenario(),  # noqa: B008 - frozen, so a safe default
    seed: int = 0,
    fmt: Format = "parquet",
    columns: Mapping[str, str] | None = None,
) -> GenerateResult:
    """Write a synthetic event log with planted rings, its labels and a detect config.

    Writes ``events.<fmt>``, ``labels.csv`` (``contributor_id,label,ring_id,ring_type,role``)
    and ``config.toml`` (the ``[input]`` section for the columns written) into ``out_dir``.
    The same scenario, seed and format give byte-identical files.

    Parameters
    ----------
    out_dir : Path
        Output folder; created if missing. Existing files of the same names are replaced.
    scenario : Scenario
        Population, rings and messiness.
    seed : int
        Seed of every random choice.
    fmt : {"parquet", "csv", "csv.gz"}
        Format of the events file. Ragged lines only occur in CSV.
    columns : mapping of str to str, optional
        Renames canonical columns (``EVENT_COLUMNS``) to imitate a foreign export, e.g.
        ``{"contributor_id": "worker_uuid"}``; ``config.toml`` maps the names written.

    Returns
    -------
    GenerateResult
        Paths written and counts.

    Raises
    ------
    ConfigError
        If ``fmt`` or ``columns`` is invalid, or the scenario's groups do not fit in its
        population.

    Examples
    --------
    >>> import tempfile
    >>> result = generate(Path(tempfile.mkdtemp()), scenario=Scenario(contributors=2000))
    >>> sorted(result.rings) == sorted(RING_TYPES) and min(result.rings.values()) >= 1
    True
    """
    if fmt not in get_args(Format):
        raise ConfigError(f"fmt = {fmt!r}: expected one of {', '.join(get_args(Format))}")
    names = column_names(columns)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    population_rng, event_rng, mess_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    world = World(scenario, population_rng)
    events = draw_events(world, event_rng)
    strings = render_identifiers(world, population_rng)
    mess = add_mess(events, scenario, strings.ip_is_v4, mess_rng, ragged=fmt != "parquet")
    events_path = out_dir / f"events.{fmt}"
    agents = strings.user_agent if fmt == "parquet" else csv_cell(strings.user_agent)
    batches = event_batches(events, mess, world.tz, strings, agents)
    write_events(events_path, fmt, names, batches)
    labels_path = out_dir / "labels.csv"
    write_labels(labels_path, world, strings)
    config_path = out_dir / "config.toml"
    write_config(config_path, names, fmt, seed)
    result = GenerateResult(
        events_path=events_path,
        labels_path=labels_path,
        config_path=config_path,
        rows=len(mess.source),
        events=len(events.time),
        duplicate_rows=mess.duplicate_rows,
        broken_rows=mess.broken_rows,
        contributors=world.n,
        fraud_contributors=int((world.ring >= 0).sum()),
        rings={kind: sum(1 for r in world.rings if r.kind == kind) for kind in RING_TYPES},
    )
    logger.info(
        "generated %d rows (%d events) for %d contributors, %d in rings, into %s",
        result.rows,
        result.events,
        result.contributors,
        result.fraud_contributors,
        out_dir,
    )
    return result
