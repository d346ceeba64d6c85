"""The CSV files: what a spreadsheet and a rule engine read, byte by byte."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ringfinder.export import iso_utc, unguarded, write_csv


def test_csv_cells_are_written_as_known(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "text": ["plain", "", None, "a,b", 'say "hi"', "two\nlines", "=SUM(A1)", " -1", "é"],
            "number": [0.300171, 1e-06, 1e20, 123456789.123, np.nan, 0.1 + 0.2, 2.0, -0.0, 5.5],
            "count": [1, 2, 3, 4, 5, 6, 7, 8, 9],
            "flag": [True, False, True, False, True, False, True, False, True],
            "at": pd.to_datetime(["2026-01-02 03:04:05.999"] * 8 + [None]),
        }
    )
    path = tmp_path / "t.csv"
    write_csv(frame, path)
    assert path.read_bytes().decode("utf-8").split("\n") == [
        "text,number,count,flag,at",
        "plain,0.300171,1,true,2026-01-02T03:04:05Z",
        ",1e-06,2,false,2026-01-02T03:04:05Z",
        ",1e+20,3,true,2026-01-02T03:04:05Z",
        '"a,b",123456789.123,4,false,2026-01-02T03:04:05Z',
        '"say ""hi""",,5,true,2026-01-02T03:04:05Z',
        '"two',
        'lines",0.30000000000000004,6,false,2026-01-02T03:04:05Z',
        "'=SUM(A1),2.0,7,true,2026-01-02T03:04:05Z",
        " -1,-0.0,8,false,2026-01-02T03:04:05Z",
        "é,5.5,9,true,",
        "",
    ]


TRICKY = ["=1+2", "'=1+2", "''=1", "'", "''", "'c", "c'", "@x", "\n=1", "-", "+", "plain"]


@pytest.mark.parametrize("value", TRICKY)
def test_a_csv_cell_reads_back_as_it_was(tmp_path: Path, value: str) -> None:
    path = tmp_path / "t.csv"
    write_csv(pd.DataFrame({"text": [value]}), path)
    cell = pd.read_csv(path, dtype=str, keep_default_na=False)["text"]
    assert not cell[0].startswith(("=", "+", "-", "@", "\n"))
    assert unguarded(cell).tolist() == [value]


def test_csv_of_random_numbers_reads_back_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    numbers = np.concatenate([rng.random(500), 10.0 ** rng.uniform(-300, 300, 500)])
    path = tmp_path / "n.csv"
    write_csv(pd.DataFrame({"x": numbers}), path)
    assert path.read_text().splitlines()[1:] == [repr(float(x)) for x in numbers]


def test_times_with_a_zone_are_written_in_utc() -> None:
    stamps = pd.Series(pd.to_datetime(["2026-03-01 12:00:00+02:00", None], utc=True))
    stamps = stamps.dt.tz_convert("Europe/Berlin")
    assert iso_utc(stamps).tolist()[0] == "2026-03-01T10:00:00Z"
    assert pd.isna(iso_utc(stamps).tolist()[1])


def test_an_empty_frame_writes_its_header(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    write_csv(pd.DataFrame({"a": pd.Series(dtype=object), "b": pd.Series(dtype=float)}), path)
    assert path.read_text() == "a,b\n"


def test_a_semicolon_never_starts_a_formula_in_a_semicolon_spreadsheet(tmp_path: Path) -> None:
    """Split at ';' (a spreadsheet's list separator in much of Europe), no part is a formula."""
    frame = pd.DataFrame({"id": ["c1", "x;=1+1", "y;@SUM(A1)"], "ring": ["R1", "R2", "R3"]})
    path = tmp_path / "t.csv"
    write_csv(frame, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == ['"id",ring', '"c1",R1', '"x;=1+1",R2', '"y;@SUM(A1)",R3']
    for row in csv.reader(lines, delimiter=";"):
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row)
    back = pd.read_csv(path, dtype=str)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
