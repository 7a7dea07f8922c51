"""Streaming a CSV or Parquet file as Arrow record batches with their file row numbers.

CSV: the delimiter is sniffed from the first lines (comma, semicolon, tab or pipe) unless given;
the header is read with Python's csv module (so that names can be checked and reported before
anything else is parsed) and the body with pyarrow's streaming reader, every column as text, one
block at a time. Rows with the wrong number of fields are skipped by the parser and reported with
their row number. Rows are records (a quoted value may span lines), the header being row 1, as
a spreadsheet shows them.

Parquet: columns keep their types; rows are numbered from 1.
"""

from __future__ import annotations

import bisect
import codecs
import csv
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from enrichment.crm.errors import CrmError
from enrichment.crm.source import Source

CANDIDATE_DELIMITERS = (",", ";", "\t", "|")
SNIFF_BYTES = 256 * 1024
BLOCK_SIZE = 8 << 20
PARQUET_BATCH = 64 * 1024
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def delimiter_name(d: str) -> str:
    return _DELIMITER_NAMES.get(d, repr(d))


@dataclass
class InvalidRow:
    row: int
    expected: int
    found: int


@dataclass
class Layout:
    columns: list[str]  # as in the file, trimmed; dropped (unnamed) columns excluded
    delimiter: str | None = None
    warnings: list[str] = field(default_factory=list)
    raw_columns: list[str] = field(default_factory=list)  # every header cell (CSV)


def _head_text(source: Source) -> str:
    with source.path.open("rb") as fh:
        raw = fh.read(SNIFF_BYTES)
    text = codecs.getincrementaldecoder(source.encoding or "utf-8")(errors="replace").decode(raw)
    text = text.lstrip("\ufeff")
    if len(raw) == SNIFF_BYTES and "\n" in text:
        text = text[: text.rfind("\n")]  # drop a line cut by the sniff window
    return text


def _field_counts(lines: list[str], delimiter: str) -> list[int]:
    try:
        return [len(row) for row in csv.reader(lines, delimiter=delimiter, strict=False)]
    except csv.Error:
        return []


def sniff_layout(source: Source, delimiter: str | None, required: str) -> Layout:
    """Delimiter and header of a CSV source; whole-file problems raise CrmError."""
    text = _head_text(source)
    lines = [line for line in text.splitlines() if line.strip()][:50]
    if not lines:
        raise CrmError(
            f"{source.label} {source.name!r} has no header row (the file holds only blank lines)"
        )
    header_line = lines[0]
    if delimiter is not None:
        if len(delimiter) != 1 or delimiter in '"\r\n':
            raise CrmError(
                f"delimiter must be one character other than a quote or newline, not {delimiter!r}"
            )
        chosen = delimiter
    else:
        chosen = _best_delimiter(lines)
    header = next(csv.reader([header_line], delimiter=chosen))
    names = [h.strip() for h in header]
    if len(names) == 1 and names[0] != required:
        splits = [
            d
            for d in CANDIDATE_DELIMITERS
            if d != chosen and (_field_counts([header_line], d) or [0])[0] > 1
        ]
        hint = (
            f" The header splits on {delimiter_name(splits[0])}: try --delimiter '{splits[0]}'."
            if splits
            else ""
        )
        how = (
            f"with the {delimiter_name(chosen)} delimiter"
            if delimiter
            else "with comma, semicolon, tab or pipe as delimiter"
        )
        raise CrmError(
            f"{source.label} {source.name!r}: only one column found {how} "
            f"(header {header_line[:80]!r}); wrong delimiter?{hint}"
        )
    layout = Layout(columns=[], delimiter=chosen, raw_columns=names)
    seen: set[str] = set()
    for i, n in enumerate(names, start=1):
        if not n:
            layout.warnings.append(f"{source.label}: column {i} has no name and was ignored")
            continue
        if n in seen:
            raise CrmError(
                f"{source.label} {source.name!r}: column name {n!r} appears more than once in the header"
            )
        seen.add(n)
        layout.columns.append(n)
    return layout


def _best_delimiter(lines: list[str]) -> str:
    best, best_score = ",", (0.0, 1)
    for d in CANDIDATE_DELIMITERS:
        counts = _field_counts(lines, d)
        if not counts or counts[0] < 2:
            continue
        body = counts[1:] or counts[:1]
        score = (sum(c == counts[0] for c in body) / len(body), counts[0])
        if score > best_score:
            best, best_score = d, score
    return best


def parquet_layout(source: Source) -> Layout:
    try:
        schema = pq.ParquetFile(source.path).schema_arrow
    except (pa.ArrowInvalid, OSError) as err:
        raise CrmError(
            f"{source.label} {source.name!r} is not a readable Parquet file: {err}"
        ) from err
    names = [str(n).strip() for n in schema.names]
    if len(set(names)) != len(names):
        raise CrmError(f"{source.label} {source.name!r}: column names repeat")
    return Layout(columns=names, raw_columns=names)


def layout_of(source: Source, delimiter: str | None, required: str) -> Layout:
    if source.format == "parquet":
        return parquet_layout(source)
    return sniff_layout(source, delimiter, required)


class NeedExactRows(Exception):
    """A multi-threaded CSV read met a row with the wrong number of fields: the parser cannot
    number it, so the file must be read again single-threaded."""


class BatchReader:
    """Iterates (batch, row numbers); ``invalid`` collects rows the CSV parser had to skip.

    CSV is parsed on several threads (``exact=False``) unless a row has the wrong number of
    fields: only single-threaded parsing can tell its row number (and hence the numbers of the
    rows after it), so such a file raises ``NeedExactRows`` and the caller reads it again with
    ``exact=True``. Well-formed files, the common case, get the faster parse.
    """

    def __init__(
        self, source: Source, layout: Layout, columns: list[str], exact: bool = False
    ) -> None:
        self.source = source
        self.layout = layout
        self.columns = columns
        self.exact = exact
        self.invalid: list[InvalidRow] = []
        self.blank_rows = 0
        self._pending: list[int] = []  # skipped row numbers not yet placed
        self._unnumbered = False

    def __iter__(self) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
        try:
            if self.source.format == "parquet":
                yield from self._parquet()
            else:
                yield from self._csv()
        except NeedExactRows:
            raise
        except (pa.ArrowInvalid, pa.ArrowException, UnicodeDecodeError) as err:
            raise CrmError(
                f"{self.source.label} {self.source.name!r} cannot be read past this point: {_short(err)}"
            ) from err

    def _parquet(self) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
        pf = pq.ParquetFile(self.source.path)
        wanted = [c for c in pf.schema_arrow.names if str(c).strip() in self.columns]
        start = 1
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH, columns=wanted):
            batch = pa.RecordBatch.from_arrays(
                batch.columns, names=[str(n).strip() for n in batch.schema.names]
            )
            rows = np.arange(start, start + batch.num_rows, dtype=np.int64)
            start += batch.num_rows
            yield batch, rows

    def _csv(self) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
        raw = self.layout.raw_columns
        # Unique internal names for every header cell, so that unnamed columns can be dropped.
        internal = [n if n else f"__unnamed_{i}" for i, n in enumerate(raw)]
        encoding = self.source.encoding or "utf-8"
        if encoding in ("utf-8", "utf-8-sig"):
            encoding = "utf8"
        reader = pacsv.open_csv(
            self.source.path,
            read_options=pacsv.ReadOptions(
                column_names=internal,
                skip_rows=1,
                block_size=BLOCK_SIZE,
                encoding=encoding,
                use_threads=not self.exact,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=self.layout.delimiter or ",",
                invalid_row_handler=self._invalid_row,
                ignore_empty_lines=False,  # keeps row numbers right; blank rows are dropped below
                newlines_in_values=True,  # quoted values may span lines (addresses, notes)
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in internal},
                include_columns=[n for n in internal if n in self.columns],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
        yielded = 0
        placed = 0
        for batch in reader:
            if self._unnumbered:
                raise NeedExactRows
            n = batch.num_rows
            rows = np.arange(yielded + 2 + placed, yielded + 2 + placed + n, dtype=np.int64)
            yielded += n
            while self._pending and n and self._pending[0] <= rows[-1]:
                rows[rows >= self._pending.pop(0)] += 1
                placed += 1
            batch, rows = self._drop_blank(batch, rows)
            if batch.num_rows:
                yield batch, rows

    def _invalid_row(self, row: pacsv.InvalidRow) -> str:
        if row.number is None:  # threaded parsing
            self._unnumbered = True
            return "skip"
        number = row.number
        if row.actual_columns == 1 and not (row.text or "").strip():
            self.blank_rows += 1
        else:
            self.invalid.append(InvalidRow(number, row.expected_columns, row.actual_columns))
        bisect.insort(self._pending, number)
        return "skip"

    def _drop_blank(
        self, batch: pa.RecordBatch, rows: np.ndarray
    ) -> tuple[pa.RecordBatch, np.ndarray]:
        if batch.num_columns == 0:
            return batch, rows
        blank = np.ones(batch.num_rows, dtype=bool)
        for col in batch.columns:
            blank &= col.is_null().to_numpy(zero_copy_only=False)
            if not blank.any():
                return batch, rows
        self.blank_rows += int(blank.sum())
        keep = ~blank
        return batch.filter(pa.array(keep)), rows[keep]


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:300]
