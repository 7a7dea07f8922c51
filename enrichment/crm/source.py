"""Turning an upload into a local, hashed, encoding-checked file before anything is parsed.

Every input (a path, a file-like upload stream, bytes) goes through one pass that hashes the raw
bytes (for idempotent re-imports), detects the format (Parquet by its magic bytes, else CSV) and,
for CSV, settles the text encoding. Streams are spooled to a temporary file in the tenant's CRM
folder so that the parser can read them more than once (sample, then stream) with bounded memory.

Encoding policy: UTF-8 (with or without BOM) is the norm; UTF-16/32 with a BOM, or UTF-16 without
one (recognised by its NUL bytes), are decoded. A file that is not valid UTF-8 and holds no valid
UTF-8 multi-byte text before the first bad byte is read as Windows-1252 (Latin-1 plus the usual
Western extras), the encoding Excel and older CRMs export, and the report says so. A file that
mixes valid UTF-8 with invalid bytes is rejected: any guess would corrupt part of it.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from enrichment.crm.errors import CrmError

CHUNK = 1 << 20
PARQUET_MAGIC = b"PAR1"
DEFAULT_MAX_BYTES = 4 << 30

_FOREIGN_MAGIC = {
    b"PK\x03\x04": "a ZIP archive or an Excel workbook (.xlsx); export the sheet as CSV",
    b"\x1f\x8b": "gzip-compressed; decompress it first",
    b"\xd0\xcf\x11\xe0": "an old Excel workbook (.xls); export the sheet as CSV",
    b"%PDF": "a PDF document, not a table",
}
_BOMS = (  # longest first: the UTF-32 LE BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

Input = str | os.PathLike | bytes | BinaryIO


@dataclass
class Source:
    """A local copy (or the original path) of one uploaded file, ready to parse."""

    path: Path
    name: str
    label: str  # "customers file" / "holdings file", for messages
    size: int
    sha256: str
    format: str  # "csv" | "parquet"
    encoding: str | None = None  # CSV only; a Python codec name
    warnings: list[str] = field(default_factory=list)
    temporary: bool = False

    def describe(self) -> dict:
        return {
            "name": self.name,
            "format": self.format,
            "bytes": self.size,
            "encoding": self.encoding,
        }

    def cleanup(self) -> None:
        if self.temporary:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


class _EncodingCheck:
    """Follows the bytes of a CSV file and settles its encoding in the same pass as the hash."""

    def __init__(self, label: str, forced: str | None, head: bytes) -> None:
        self.label = label
        self.forced = forced
        self.warning: str | None = None
        self._offset = 0
        self._newlines = 0
        self._saw_multibyte = False
        if forced:
            try:
                self.encoding = codecs.lookup(forced).name
            except LookupError as err:
                raise CrmError(f"{label}: unknown encoding {forced!r}") from err
        else:
            by_bom = next((n for bom, n in _BOMS if head.startswith(bom)), None)
            self.encoding = by_bom or _nul_encoding(head, label) or "utf-8"
        self._decoder = codecs.getincrementaldecoder(self.encoding)()

    def feed(self, chunk: bytes) -> None:
        buffered = self._decoder.getstate()[0]
        if self.encoding in ("utf-8", "utf-8-sig") and not buffered and chunk.isascii():
            self._advance(chunk)
            return
        try:
            self._decoder.decode(chunk)
        except UnicodeDecodeError as err:
            self._fall_back(chunk, max(0, err.start - len(buffered)))
        else:
            self._saw_multibyte = self._saw_multibyte or not chunk.isascii()
        self._advance(chunk)

    def finish(self) -> None:
        try:
            self._decoder.decode(b"", True)
        except UnicodeDecodeError as err:
            raise CrmError(
                f"{self.label} ends in the middle of a character ({err.reason})"
            ) from err

    def _advance(self, chunk: bytes) -> None:
        self._offset += len(chunk)
        self._newlines += chunk.count(b"\n")

    def _fall_back(self, chunk: bytes, pos: int) -> None:
        line = self._newlines + chunk.count(b"\n", 0, pos) + 1
        where = f"line {line} (byte {self._offset + pos})"
        if self.forced or self.encoding not in ("utf-8", "utf-8-sig"):
            raise CrmError(
                f"{self.label} is not valid {self.encoding} text at {where}; "
                "save it as UTF-8 or name its encoding (--encoding)"
            )
        if self._saw_multibyte or not chunk[:pos].isascii():
            raise CrmError(
                f"{self.label} mixes encodings: it holds UTF-8 text but is not valid UTF-8 at "
                f"{where}; save it again as UTF-8"
            )
        # Everything before this chunk was ASCII, which Windows-1252 reads the same way.
        self.encoding, label = "cp1252", "Windows-1252 (Latin-1)"
        try:
            codecs.decode(chunk, "cp1252")
        except UnicodeDecodeError:  # bytes Windows-1252 leaves undefined: plain Latin-1
            self.encoding, label = "latin-1", "Latin-1"
        self._decoder = codecs.getincrementaldecoder(self.encoding)()
        self.warning = (
            f"{self.label} is not UTF-8 (first non-UTF-8 byte at {where}); it was read as {label}"
        )


def _nul_encoding(head: bytes, label: str) -> str | None:
    """UTF-16 without a BOM shows NUL bytes in every other position (for Latin text)."""
    sample = head[:4096]
    if b"\x00" not in sample:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd and odd.count(0) > 0.8 * len(odd) and even.count(0) < 0.2 * len(even):
        return "utf-16-le"
    if even and even.count(0) > 0.8 * len(even) and odd.count(0) < 0.2 * len(odd):
        return "utf-16-be"
    raise CrmError(f"{label} holds binary data (NUL bytes), not CSV text or Parquet")


def _detect_format(head: bytes, name: str, label: str) -> str:
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    for magic, what in _FOREIGN_MAGIC.items():
        if head.startswith(magic):
            raise CrmError(f"{label} {name!r} is {what}")
    if name.lower().endswith((".parquet", ".pq")):
        raise CrmError(f"{label} {name!r} is named like Parquet but is not a Parquet file")
    return "csv"


def prepare_source(
    data: Input,
    *,
    spool_dir: Path,
    label: str,
    name: str | None = None,
    encoding: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Source:
    """Hash, size-check and encoding-check an input; spool streams and bytes to ``spool_dir``."""
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        if not path.is_file():
            raise CrmError(f"{label} {str(path)!r} does not exist or is not a file")
        with path.open("rb") as fh:
            return _scan(fh, None, path, name or path.name, label, encoding, max_bytes)
    stream = io.BytesIO(bytes(data)) if isinstance(data, bytes | bytearray | memoryview) else data
    spool_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=spool_dir)
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out:
            source = _scan(
                stream,
                out,
                tmp_path,
                name or getattr(data, "name", None) or "upload",
                label,
                encoding,
                max_bytes,
            )
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
    source.temporary = True
    return source


def _scan(
    stream: BinaryIO,
    copy_to: BinaryIO | None,
    path: Path,
    name: str,
    label: str,
    encoding: str | None,
    max_bytes: int,
) -> Source:
    name = os.path.basename(str(name))
    digest = hashlib.sha256()
    size = 0
    head = b""  # held back until the format is known (short reads from a network stream)
    last = b""
    fmt: str | None = None
    check: _EncodingCheck | None = None
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        if not isinstance(chunk, bytes | bytearray):
            raise CrmError(f"{label}: expected bytes, got text; open the file in binary mode")
        chunk = bytes(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise CrmError(f"{label} is larger than the limit of {max_bytes} bytes")
        digest.update(chunk)
        last = (last + chunk)[-4:]
        if copy_to is not None:
            copy_to.write(chunk)
        if fmt is None:
            head += chunk
            if len(head) < 8:
                continue
            fmt, check = _start(head, name, label, encoding)
            chunk = head
        if check is not None:
            check.feed(chunk)
    if size == 0:
        raise CrmError(f"{label} {name!r} is empty (0 bytes)")
    if fmt is None:  # fewer than 8 bytes in all
        fmt, check = _start(head, name, label, encoding)
        if check is not None:
            check.feed(head)
    if fmt == "parquet" and (size < 12 or last != PARQUET_MAGIC):
        raise CrmError(f"{label} {name!r} is a truncated Parquet file (its footer is missing)")
    source = Source(
        path=path, name=name, label=label, size=size, sha256=digest.hexdigest(), format=fmt
    )
    if check is not None:
        check.finish()
        source.encoding = check.encoding
        if check.warning:
            source.warnings.append(check.warning)
    return source


def _start(
    head: bytes, name: str, label: str, encoding: str | None
) -> tuple[str, _EncodingCheck | None]:
    fmt = _detect_format(head, name, label)
    return fmt, (_EncodingCheck(label, encoding, head) if fmt == "csv" else None)
