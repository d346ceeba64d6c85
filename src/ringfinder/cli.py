"""Command line: parse, load config, call one library function, print a short summary."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar, cast

import click
import duckdb
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ringfinder import __version__
from ringfinder.config import Config, load_config
from ringfinder.diff import ROW_HEADER, diff_runs
from ringfinder.errors import ConfigError, RingfinderError
from ringfinder.evaluate import evaluate_run
from ringfinder.export import check_out_folder
from ringfinder.history import HISTORY_COLUMNS, history_table
from ringfinder.ingest import read_known_bad
from ringfinder.lineage import check_ring_ids, read_run_members
from ringfinder.pipeline import run_detect
from ringfinder.synth import Scenario
from ringfinder.synth import generate as generate_scenario
from ringfinder.synth.scenario import Format
from ringfinder.visualize import explain_ring, visible_text

F = TypeVar("F", bound=Callable[..., Any])
stderr = Console(stderr=True)


MAX_ERROR_CHARS = 2000


def _one_line(message: str) -> str:
    """The message on one line: control characters escaped (so a hostile column name can
    neither break the line nor drive the terminal), and cut to a readable length."""
    return visible_text(message[:MAX_ERROR_CHARS]) + ("…" if len(message) > MAX_ERROR_CHARS else "")


def _fail(message: str, code: int) -> None:
    click.echo(f"ringfinder: error: {_one_line(message)}", err=True)
    sys.exit(code)


def reports_errors(command: F) -> F:
    """Turn ringfinder's errors, and data or disk errors, into one line and an exit code."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except RingfinderError as exc:
            _fail(str(exc), exc.exit_code)
        except duckdb.OutOfMemoryException as exc:
            _fail(
                f"data engine ran out of memory ({str(exc).strip().splitlines()[0]}); raise "
                "resources.memory_limit, or give resources.temp_directory a disk with room to spill",
                1,
            )
        except duckdb.Error as exc:
            _fail(f"data engine: {str(exc).strip().splitlines()[0]}", 1)
        except MemoryError:
            _fail(
                "out of memory; set resources.memory_limit and resources.temp_directory to spill", 1
            )
        except OSError as exc:
            _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), 1)
        except click.ClickException:
            raise
        except Exception as exc:  # a bug: still one line, never a traceback
            _fail(f"internal error ({type(exc).__name__}: {exc}); please report it", 1)
        return None

    return wrapper  # type: ignore[return-value]


@contextmanager
def _stage(name: str) -> Iterator[None]:
    """Show a stage as it runs (spinner and time so far), then the time it took."""
    started = time.perf_counter()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    # Off a terminal (a log file, a pipe) only the closing line is written.
    with Progress(*columns, console=stderr, transient=True, disable=not stderr.is_terminal) as bar:
        bar.add_task(f"{name}…", total=None)
        yield
    seconds = time.perf_counter() - started
    stderr.print(f"[dim]{name} done in {seconds:.1f} s[/dim]", highlight=False)


def _config(path: Path | None, seed: int | None) -> Config:
    config = load_config(path)
    if seed is not None:
        config = config.model_copy(
            update={"detect": config.detect.model_copy(update={"seed": seed})}
        )
    return config


@click.group()
@click.version_option(__version__, prog_name="ringfinder")
def main() -> None:
    """ringfinder: find fraud rings among the contributors of a work marketplace."""


@main.command()
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the outputs (replaced atomically).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML config; the documented defaults when omitted.",
)
@click.option("--sql", help="A DuckDB query whose result is the input, instead of files.")
@click.option("--seed", type=int, help="Override detect.seed.")
@click.option(
    "--known-bad",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Contributor ids already banned (one per line, or CSV with contributor_id).",
)
@click.option("--no-html", is_flag=True, help="Skip report.html and the ring pages.")
@click.option(
    "--previous",
    "previous_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder of the previous detect run: a ring that is the same ring keeps its id "
    "(default: the last run in output.history, if set).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@reports_errors
def detect(
    inputs: tuple[Path, ...],
    out_dir: Path,
    config_path: Path | None,
    sql: str | None,
    seed: int | None,
    known_bad: Path | None,
    no_html: bool,
    previous_dir: Path | None,
    as_json: bool,
) -> None:
    """Find and score rings in event exports (CSV, Parquet, JSON lines, globs, folders).

    Example: ringfinder detect fixtures/sample/events.csv.gz --config fixtures/sample/config.toml --out out
    """
    if not inputs and sql is None:
        raise ConfigError("give input files, a folder or a glob, or --sql QUERY")
    if inputs and sql is not None:
        raise ConfigError("give either input files or --sql, not both")
    if sql is not None and not sql.strip(" \t\r\n;"):
        raise ConfigError("--sql: the query is empty")
    config = _config(config_path, seed)
    if no_html:
        config = config.model_copy(
            update={"output": config.output.model_copy(update={"html": False})}
        )
    check_out_folder(out_dir, [p for p in (config_path, known_bad) if p is not None])
    banned = read_known_bad(known_bad) if known_bad else []
    previous = None
    if previous_dir:
        previous = check_ring_ids(read_run_members(previous_dir), f"{previous_dir} (--previous)")
    result = run_detect(
        inputs,
        config=config,
        out_dir=out_dir,
        sql=sql,
        report=_stage,
        known_bad=banned,
        previous=previous,
    )
    m = result.manifest
    if as_json:
        summary = {
            k: m[k]
            for k in (
                "rows",
                "contributors",
                "rings",
                "flagged_rings",
                "flagged_contributors",
                "lineage",
                "timings_seconds",
            )
        }
        summary.update({k: m[k] for k in ("run_id", "recorded_in_history") if k in m})
        summary["out_dir"] = str(out_dir)
        click.echo(json.dumps(summary, sort_keys=True))
        return
    rows = m["rows"]
    click.echo(
        f"read {rows['read']} rows: {rows['accepted']} accepted, {rows['quarantined']} quarantined, "
        f"{rows['duplicates']} duplicates; {m['contributors']} contributors"
    )
    click.echo(
        f"{m['rings']} rings, {m['flagged_rings']} flagged ({m['flagged_contributors']} contributors); "
        f"outputs in {out_dir}"
    )
    if m["lineage"]["previous_rings"]:
        counts = m["lineage"]["counts"]
        click.echo("against the previous run: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    if m.get("recorded_in_history") is False:
        click.echo(
            f"history: run {m['run_id']} is already recorded (same inputs, config and rings); "
            "not recorded again"
        )


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--labels",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="contributor_id, label (fraud/benign or 1/0), optional ring_id and segments.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where eval.json and eval.html go (default: RUN_DIR).",
)
@click.option(
    "--fp-rate",
    "fp_budget_rate",
    type=click.FloatRange(0, 1),
    help="Budget: the largest benign false-positive rate allowed.",
)
@click.option(
    "--fp-per-10k",
    type=click.FloatRange(min=0),
    help="Budget: flagged honest contributors per 10,000.",
)
@click.option(
    "--capacity",
    "review_capacity",
    type=click.IntRange(min=0),
    help="Review capacity: at most this many flagged contributors.",
)
@click.option(
    "--unlabelled-benign", is_flag=True, help="Count contributors without a label as benign."
)
@click.option(
    "--k",
    "ks",
    type=click.IntRange(min=1),
    multiple=True,
    default=(10, 50, 100, 500),
    show_default=True,
    help="Review queue sizes for precision at k.",
)
@click.option(
    "--segment", "segments", multiple=True, help="Label columns to break false positives down by."
)
@reports_errors
def evaluate(
    run_dir: Path,
    labels: Path,
    out_dir: Path | None,
    fp_budget_rate: float | None,
    fp_per_10k: float | None,
    review_capacity: int | None,
    unlabelled_benign: bool,
    ks: tuple[int, ...],
    segments: tuple[str, ...],
) -> None:
    """Measure a finished detect run against labels: precision, recall, thresholds, costs.

    Example: ringfinder evaluate out/sample --labels fixtures/sample/labels.csv --fp-rate 0.001
    """
    result = evaluate_run(
        run_dir,
        labels,
        out_dir=out_dir or run_dir,
        fp_budget_rate=fp_budget_rate,
        fp_per_10k=fp_per_10k,
        review_capacity=review_capacity,
        unlabelled_benign=unlabelled_benign,
        ks=ks,
        segment_columns=segments or None,
    )
    for name, value in result.summary_rows():
        click.echo(f"{name:<36} {value}")


def _scenario(path: Path | None, overrides: dict[str, Any]) -> Scenario:
    """A Scenario from an optional TOML file of its fields, with command-line overrides."""
    fields: dict[str, Any] = {}
    if path is not None:
        try:
            fields = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read scenario: {exc}") from None
    fields.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(Scenario)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"{path or 'scenario'}: unknown key(s): {', '.join(unknown)}")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    try:
        return Scenario(**values)
    except TypeError as exc:
        raise ConfigError(f"{path or 'scenario'}: {exc}") from None


@main.command()
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for events, labels.csv and config.toml.",
)
@click.option(
    "--contributors", type=click.IntRange(min=1), help="Total contributors (default 5000)."
)
@click.option("--days", type=click.IntRange(min=1), help="Length of the window in days.")
@click.option("--events-per-contributor", type=click.FloatRange(min=1), help="Mean events each.")
@click.option(
    "--scenario",
    "scenario_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML file of Scenario fields (ring counts and sizes, lookalike rates, mess).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "csv", "csv.gz"]),
    default="parquet",
    show_default=True,
)
@click.option(
    "--rename",
    multiple=True,
    metavar="COLUMN=NAME",
    help="Write a column under another name, to imitate a foreign export.",
)
@reports_errors
def generate(
    out_dir: Path,
    contributors: int | None,
    days: int | None,
    events_per_contributor: float | None,
    scenario_path: Path | None,
    seed: int,
    fmt: str,
    rename: tuple[str, ...],
) -> None:
    """Write synthetic events with planted rings and honest lookalikes, their labels and a config.

    Example: ringfinder generate --out data/demo --contributors 200000 --seed 7
    """
    columns = {}
    for item in rename:
        column, sep, name = item.partition("=")
        if not sep or not column or not name:
            raise ConfigError(f"--rename {item!r}: expected COLUMN=NAME")
        columns[column] = name
    scenario = _scenario(
        scenario_path,
        {
            "contributors": contributors,
            "days": days,
            "events_per_contributor": events_per_contributor,
        },
    )
    result = generate_scenario(
        out_dir, scenario=scenario, seed=seed, fmt=cast(Format, fmt), columns=columns or None
    )
    click.echo(
        f"{result.events} events of {result.contributors} contributors "
        f"({result.fraud_contributors} in {sum(result.rings.values())} planted rings) "
        f"written to {out_dir}"
    )


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.argument("ring_id")
@reports_errors
def explain(run_dir: Path, ring_id: str) -> None:
    """Print a ring's evidence and reasons from a detect output folder.

    Example: ringfinder explain out/sample R5feee8a40681
    """
    click.echo(explain_ring(run_dir, ring_id))


def _echo_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print rows as a plain left-aligned text table, data shown as ``visible_text``."""
    rows = [[visible_text(cell) for cell in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    for row in (header, *rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@main.command()
@click.argument("db_path", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML config whose output.history names the file (instead of DB_PATH).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per run.")
@reports_errors
def history(db_path: Path | None, config_path: Path | None, as_json: bool) -> None:
    """Trends across recorded runs: rings new, grown, shrunk and closed, flags, score drift.

    Example: ringfinder history out/history.duckdb
    """
    if db_path is None:
        configured = load_config(config_path).output.history
        if not configured:
            raise ConfigError("give the history file, or --config FILE with output.history set")
        db_path = Path(configured)
    table = history_table(db_path)
    if as_json:
        for record in json.loads(table.to_json(orient="records", date_format="iso")):
            click.echo(json.dumps(record, sort_keys=True))
        return

    def cell(column: str, value: Any) -> str:
        if value is None or value != value:
            return "-"
        if column == "recorded_at":
            return str(value.strftime("%Y-%m-%d %H:%M"))
        if isinstance(value, float):
            return f"{value:+.3f}" if column == "score_drift" else f"{value:.3f}"
        return str(value)

    rows = [
        tuple(cell(c, getattr(r, c)) for c in HISTORY_COLUMNS)
        for r in table.itertuples(index=False)
    ]
    _echo_table(HISTORY_COLUMNS, rows)


@main.command()
@click.argument("old_run", type=click.Path(path_type=Path, file_okay=False))
@click.argument("new_run", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--min-overlap",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.5,
    show_default=True,
    help="Jaccard similarity at which two rings are the same ring.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the diff as JSON.")
@reports_errors
def diff(old_run: Path, new_run: Path, min_overlap: float, as_json: bool) -> None:
    """Compare two detect runs: rings new, grown, shrunk, split, merged and gone, and flags.

    Rings are matched by shared members, so runs made without --previous compare too.

    Example: ringfinder diff out/monday out/tuesday --json
    """
    result = diff_runs(old_run, new_run, min_overlap=min_overlap)
    if as_json:
        click.echo(json.dumps(result.to_dict(), sort_keys=True))
        return
    counts = result.counts()
    click.echo(", ".join(f"{n} {change.replace('_', ' ')}" for change, n in counts.items()))
    if result.rows():
        _echo_table(ROW_HEADER, result.rows())
