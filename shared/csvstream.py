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

from shared.errors import SourceError
from shared.layout import Model

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
        stream = open_partition(name)
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
            # Text is decoded ahead of the CSV reader, so the line is a lower bound.
            raise SourceError(
                f"{name}: not valid UTF-8 text (at or after line {reader.line_num + 1})"
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
