"""Reading one column out of a snapshot's CSV partitions as a stream of cells.

Pure apart from the ``open_partition`` callable it is given: partitions are read one after
another through a small buffer, so memory does not depend on their size. Handles UTF-8 with
or without a byte order mark, CRLF line ends, and quoted fields holding delimiters, quotes
or line breaks. Every structural problem is a SourceError naming the partition and line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator

from shared.core.errors import SourceError
from shared.core.layout import Model

_READ_BUFFER = 1 << 20
# A field longer than csv.field_size_limit() (128 KiB unless changed) ends the run with a
# SourceError: such a cell is malformed input, never an identifier.


class ChunkReader(io.RawIOBase):
    """A readable binary stream over an iterator of byte chunks (e.g. a blob download)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class _Inspected(io.RawIOBase):
    """A partition's bytes as they are read, checked for NUL (which Customer Insights never
    writes: a file holding one is damaged) and counted, so that a problem names its line."""

    def __init__(self, inner: io.RawIOBase, name: str) -> None:
        self._inner, self._name = inner, name
        self._offset = 0  # bytes read so far
        self._lines = 0  # line breaks in them

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        size = self._inner.readinto(buffer) or 0
        data = memoryview(buffer)[:size].tobytes()
        nul = data.find(b"\0")
        if nul >= 0:
            line = self._lines + data.count(b"\n", 0, nul) + 1
            raise SourceError(
                f"{self._name}: line {line} (byte {self._offset + nul}) holds a NUL byte; "
                "the file is damaged (Customer Insights never writes one); export the segment "
                "again or remove the file"
            )
        self._offset += size
        self._lines += data.count(b"\n")
        return size


def first_invalid_utf8(stream: io.RawIOBase) -> tuple[int, int] | None:
    """The line (from 1) and byte offset (from 0) of the first byte sequence in ``stream``
    that is not UTF-8, or None when there is none. Reads the stream to its end or the fault."""
    reader = io.BufferedReader(stream, _READ_BUFFER)
    offset, lines, carry = 0, 0, b""
    while True:
        chunk = reader.read(_READ_BUFFER)
        data = carry + chunk
        if not data:
            return None
        try:
            data.decode("utf-8")
            carry = b""
        except UnicodeDecodeError as exc:
            # A sequence cut by the end of this chunk may be completed by the next one.
            if chunk and exc.reason == "unexpected end of data" and len(data) - exc.start < 4:
                carry = data[exc.start :]
                data = data[: exc.start]
            else:
                return lines + data.count(b"\n", 0, exc.start) + 1, offset + exc.start
        if not chunk:
            return None
        offset += len(data)
        lines += data.count(b"\n")


def column_cells(
    partitions: Iterable[str],
    open_partition: Callable[[str], io.RawIOBase],
    *,
    column: str,
    model: Model | None,
) -> Iterator[str]:
    """Yield the ``column`` cell of every data row of every partition, in order."""
    header: list[str] | None = None
    for name in partitions:
        stream = _Inspected(open_partition(name), name)
        text = io.TextIOWrapper(
            io.BufferedReader(stream, _READ_BUFFER),
            encoding="utf-8-sig",
            newline="",
        )
        delimiter = model.csv.delimiter if model else ","
        reader = csv.reader(text, delimiter=delimiter, strict=True)
        try:
            with text:
                first = next(reader, None)
                if first is None:
                    continue  # an empty partition holds no rows
                header, index, first_is_data = _locate(first, name, column, model, header)
                width = len(header)
                if first_is_data:
                    _check_width(first, width, name, reader.line_num)
                    yield first[index]
                for row in reader:
                    if len(row) != width:
                        if not row:
                            continue  # a blank line
                        _check_width(row, width, name, reader.line_num)
                    yield row[index]
        except UnicodeDecodeError:
            # Text is decoded ahead of the CSV reader, whose line count is therefore no guide:
            # read the partition again to find the exact place.
            found = first_invalid_utf8(open_partition(name))
            where = f"line {found[0]} (byte {found[1]})" if found else "somewhere"
            raise SourceError(
                f"{name}: not valid UTF-8 text: the first invalid byte sequence is on {where}; "
                "Customer Insights writes UTF-8, so the file is damaged or was written by "
                "another tool"
            ) from None
        except csv.Error as exc:
            raise SourceError(f"{name}: line {reader.line_num}: malformed CSV ({exc})") from None


def _locate(
    first: list[str], name: str, column: str, model: Model | None, known: list[str] | None
) -> tuple[list[str], int, bool]:
    """The partition's column names, the wanted column's index, and whether row 1 is data."""
    if model is not None:
        names = [cell.strip() for cell in first] if model.csv.header else list(model.columns)
        if column not in names:
            # Only model.json's names are quoted: a "header" row that is really data (the
            # model says there is a header, the file has none) must not reach the message.
            raise SourceError(
                f"{name}: no column named {column!r}; model.json's columns are "
                f"{', '.join(model.columns)}"
                + (" (and the partition's first row does not name it)" if model.csv.header else "")
            )
        return names, names.index(column), not model.csv.header
    folded = [cell.strip().lower() for cell in first]
    if column.lower() in folded:
        return [cell.strip() for cell in first], folded.index(column.lower()), False
    if known is not None:
        return known, [c.lower() for c in known].index(column.lower()), True
    raise SourceError(
        f"{name}: no model.json, and the first row is not a header naming column {column!r}"
    )


def _check_width(row: list[str], width: int, name: str, line: int) -> None:
    if len(row) != width:
        raise SourceError(f"{name}: line {line} has {len(row)} fields, expected {width}")
