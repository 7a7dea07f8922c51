"""Column-wise JSON encoding with Arrow compute, for serving profiles of millions of customers.

Building one Python object per cell and serialising row by row costs ~40 Python objects per
customer; encoding each column to JSON text in C++ and joining the columns per row does the same
work vectorised. Numbers use Arrow's shortest round-trip formatting (valid JSON: ``55000``,
``1e-7``); missing values and non-finite numbers become ``null``; text is escaped per RFC 8259.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

_CONTROL = r"[\x00-\x1f]"
_NAMED_ESCAPES = (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\b", "\\b"), ("\f", "\\f"))


def _escape(text: pa.Array) -> pa.Array:
    text = pc.replace_substring(text, "\\", "\\\\")
    text = pc.replace_substring(text, '"', '\\"')
    if pc.any(pc.match_substring_regex(text, _CONTROL)).as_py():
        for raw, escaped in _NAMED_ESCAPES:
            text = pc.replace_substring(text, raw, escaped)
        for code in range(0x20):  # the rest are rare enough to pay a pass each only when present
            ch = chr(code)
            if pc.any(pc.match_substring(text, ch)).as_py():
                text = pc.replace_substring(text, ch, f"\\u{code:04x}")
    return text


def quoted(text: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise('"', _escape(text), '"', "")


def json_values(array: pa.Array) -> pa.Array:
    """Each value as JSON text (a string array without nulls)."""
    t = array.type
    if pa.types.is_dictionary(t):
        array, t = array.dictionary_decode(), t.value_type
    if pa.types.is_floating(t):
        finite = pc.fill_null(pc.is_finite(array), False)
        out = pc.if_else(finite, pc.cast(array, pa.string()), pa.scalar(None, pa.string()))
    elif pa.types.is_integer(t) or pa.types.is_decimal(t):
        out = pc.cast(array, pa.string())
    elif pa.types.is_boolean(t):
        out = pc.if_else(array, pa.scalar("true"), pa.scalar("false"))
    elif pa.types.is_date(t) or pa.types.is_timestamp(t):
        out = quoted(pc.cast(pc.cast(array, pa.date32()), pa.string()))
    else:
        out = quoted(pc.cast(array, pa.string()))
    return pc.fill_null(out, "null")


def json_arrays(columns: list[pa.Array]) -> pa.Array:
    """Per row, the JSON array of the given columns' values (already JSON text or raw columns)."""
    inner = pc.binary_join_element_wise(*columns, ",")
    return pc.binary_join_element_wise("[", inner, "]", "")
