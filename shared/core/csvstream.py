"""Reading identifier columns out of a snapshot's CSV partitions.

Pure apart from the ``open_partition`` callable it is given: partitions are read one after
another through a bounded buffer, so memory does not depend on their size. Handles UTF-8
with or without a byte order mark, CRLF line ends, and quoted fields holding delimiters,
quotes or line breaks. Every structural problem is a SourceError naming the partition and
line.

Two readers share the header rules (``_locate``):

- ``column_blocks``, the export's: Apache Arrow's CSV parser (compiled, on several threads)
  reads each partition once, whatever the number of columns wanted, and hands over blocks of
  a few megabytes as Arrow arrays. The bytes are checked for NUL and for UTF-8 on the way in.
- ``column_cells``, the exact one, in Python: it names the line of any fault. When Arrow
  refuses a partition, the partition is read again with it to say what and where.

Arrow is more lenient in two places: text after a closing quote (``"a"b``) is kept as part
of the field, where ``column_cells`` refuses it; and only the columns read are decoded and
checked for length (a cell over ``csv.field_size_limit()`` in them sends the partition to
``column_cells``, which names the line).
"""

from __future__ import annotations

import atexit
import codecs
import csv
import io
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as arrow_csv

from shared.core.errors import MissingColumn, NulByte, SourceMalformed
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


class _NulByte(Exception):  # noqa: N818 - a fault found while reading, turned into a SourceError
    """A partition holds a NUL byte at ``offset``."""

    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


class _Inspected(io.RawIOBase):
    """A partition's bytes as they are read, checked for NUL (which Customer Insights never
    writes: a file holding one is damaged); the line is only counted once one is found."""

    def __init__(self, inner: io.RawIOBase, *, text: bool = False) -> None:
        self._inner = inner
        self._offset = 0  # bytes read so far
        # With ``text``, also decoded as UTF-8 (UnicodeDecodeError on a fault), for a reader
        # that decodes only the columns it keeps.
        self._decoder = codecs.getincrementaldecoder("utf-8")() if text else None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        size = self._inner.readinto(buffer) or 0
        with memoryview(buffer)[:size] as data:
            nul = data.tobytes().find(b"\0") if size else -1
            if nul >= 0:
                raise _NulByte(self._offset + nul)
            if self._decoder is not None:
                self._decoder.decode(data, final=not size)
        self._offset += size
        return size


def _refuse_nul(name: str, open_partition: Callable[[str], io.RawIOBase], offset: int) -> None:
    """Name the line of the NUL byte at ``offset``: the partition is read again up to it."""
    reader = io.BufferedReader(open_partition(name), _READ_BUFFER)
    lines, left = 0, offset
    with reader:
        while left > 0:
            chunk = reader.read(min(left, _READ_BUFFER))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            left -= len(chunk)
    raise NulByte(
        f"{name}: line {lines + 1} (byte {offset}) holds a NUL byte; "
        "the file is damaged (Customer Insights never writes one); export the segment "
        "again or remove the file"
    ) from None


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
        found = _partition_cells(name, open_partition, column, model, header)
        header = cast("list[str] | None", next(found))
        yield from cast("Iterator[str]", found)


def _partition_cells(
    name: str,
    open_partition: Callable[[str], io.RawIOBase],
    column: str,
    model: Model | None,
    known: list[str] | None,
) -> Iterator[object]:
    """First the header the partition has (or ``known``), then its ``column`` cells."""
    stream = _Inspected(open_partition(name))
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
                yield known  # an empty partition holds no rows
                return
            header, index, first_is_data = _locate(first, name, column, model, known)
            yield header
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
        _refuse_text(name, open_partition)
    except _NulByte as fault:
        _refuse_nul(name, open_partition, fault.offset)
    except csv.Error as exc:
        raise SourceMalformed(f"{name}: line {reader.line_num}: malformed CSV ({exc})") from None


def _refuse_text(name: str, open_partition: Callable[[str], io.RawIOBase]) -> None:
    # Text is decoded ahead of the CSV reader, whose line count is therefore no guide: read
    # the partition again to find the exact place.
    found = first_invalid_utf8(open_partition(name))
    where = f"line {found[0]} (byte {found[1]})" if found else "somewhere"
    raise SourceMalformed(
        f"{name}: not valid UTF-8 text: the first invalid byte sequence is on {where}; "
        "Customer Insights writes UTF-8, so the file is damaged or was written by "
        "another tool"
    ) from None


_BLOCK = 2 << 20  # bytes of CSV that Arrow parses at a time (per thread)
_AHEAD = 4  # blocks Arrow's reader may read ahead of the batches taken (``_Paced``)
_PATIENCE = 0.05  # seconds a batch is waited for before Arrow may read past _AHEAD
_BOM = codecs.BOM_UTF8


def column_blocks(
    partitions: Iterable[str],
    open_partition: Callable[[str], io.RawIOBase],
    *,
    columns: Sequence[str],
    model: Model | None,
) -> Iterator[tuple[str, tuple[pa.Array, ...]]]:
    """Yield, block after block, the partition's name and the cells of each of ``columns``
    (in that order) for its data rows; every partition is read once."""
    header: list[str] | None = None
    delimiter = model.csv.delimiter if model else ","
    for name in partitions:
        stream = _Inspected(open_partition(name), text=True)
        buffered = io.BufferedReader(stream, _READ_BUFFER)
        try:
            record, rest = _first_record(buffered)
            if not record.strip():
                continue  # an empty partition holds no rows
            first = next(csv.reader([record.decode("utf-8")], delimiter=delimiter, strict=True))
            located = [_locate(first, name, column, model, header) for column in columns]
            header, _, first_is_data = located[0]
            wanted = list(dict.fromkeys(index for _, index, _ in located))
            names = [f"c{i}" for i in range(len(header))]
            head = (record if first_is_data else b"") + rest
            if not head.strip() and not buffered.peek(1):
                continue  # a header and no rows
            paced = _Paced(head, buffered)
            reader = arrow_csv.open_csv(
                paced,
                read_options=arrow_csv.ReadOptions(
                    column_names=names, block_size=_BLOCK, use_threads=True
                ),
                parse_options=arrow_csv.ParseOptions(
                    delimiter=delimiter, newlines_in_values=True, ignore_empty_lines=True
                ),
                convert_options=arrow_csv.ConvertOptions(
                    include_columns=[names[i] for i in wanted],
                    column_types={names[i]: pa.string() for i in wanted},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            with reader:
                try:
                    for batch in paced.batches(reader):
                        cells = {i: batch.column(position) for position, i in enumerate(wanted)}
                        if any(_longest(c) > csv.field_size_limit() for c in cells.values()):
                            _explain(name, open_partition, columns[0], model, header)
                        yield name, tuple(cells[index] for _, index, _ in located)
                finally:
                    paced.stop()  # before the reader closes: its reading thread may be waiting
        except UnicodeDecodeError:
            _refuse_text(name, open_partition)
        except _NulByte as fault:
            _refuse_nul(name, open_partition, fault.offset)
        except (pa.ArrowException, csv.Error):
            _explain(name, open_partition, columns[0], model, header)
        finally:
            buffered.close()


def _longest(column: pa.Array) -> int:
    longest = pc.max(pc.binary_length(column)).as_py()
    return int(longest or 0)


def _first_record(reader: io.BufferedIOBase) -> tuple[bytes, bytes]:
    """The partition's first record (a line, unless a quoted field holds line breaks),
    without a byte order mark, and what was read after it."""
    data = b""
    while True:
        chunk = reader.read1(1 << 16)
        data += chunk
        if data.startswith(_BOM):
            data = data[len(_BOM) :]
        end = data.find(b"\n")
        while end >= 0:
            if data.count(b'"', 0, end) % 2 == 0:
                if data[: end + 1].strip():
                    return data[: end + 1], data[end + 1 :]
                data, end = data[end + 1 :], -1  # a blank line before the first record
                end = data.find(b"\n")
                continue
            end = data.find(b"\n", end + 1)
        if not chunk:
            return data, b""


def _explain(
    name: str,
    open_partition: Callable[[str], io.RawIOBase],
    column: str,
    model: Model | None,
    known: list[str] | None,
) -> None:
    """Arrow refused the partition: read it with the exact reader, which names the fault.
    (Arrow's own message quotes the row, which may hold personal data: never passed on.)"""
    for _ in _partition_cells(name, open_partition, column, model, known):
        pass
    raise SourceMalformed(
        f"{name}: malformed CSV that the exact reader accepts (a row longer than "
        f"{_BLOCK >> 20} MiB?); check the file"
    )


class _Paced(io.RawIOBase):
    """Some bytes already read, then the rest of a stream, handed to Arrow's reader in whole
    blocks, at most ``_AHEAD`` blocks ahead of the batches taken from it.

    Arrow's streaming reader reads up to 32 blocks ahead on a thread of its own: 64 MiB of a
    large partition held while its batches wait to be hashed and sent (the whole of a small
    one), so memory grew with the partitions' size. Here its reading thread waits instead, and
    the two never wait for each other for long: should Arrow need more blocks than that for
    its next batch (it never does for rows shorter than a block), the reading thread goes on
    once the batches' reader has waited ``_PATIENCE`` seconds."""

    def __init__(self, head: bytes, rest: io.BufferedIOBase) -> None:
        self._head = memoryview(head)
        self._rest = rest
        self._turn = threading.Condition()
        self._ahead = 0  # blocks read and not yet taken as batches
        self._asking: int | None = None  # the batch the batches' reader waits for, if any
        self._asked = 0
        self._stopped = False
        self._inside = False  # Arrow's reading thread is in readinto
        _UNFINISHED.add(self)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        with self._turn:
            self._inside = True
        try:
            return self._read_block(buffer)
        finally:
            with self._turn:
                self._inside = False
                self._turn.notify_all()

    def _read_block(self, buffer: bytearray | memoryview) -> int:
        with self._turn:
            while self._ahead >= _AHEAD and not self._stopped:
                asked = self._asking
                if not self._turn.wait(_PATIENCE) and asked is not None and asked == self._asking:
                    break  # the batches' reader waited all along: Arrow needs this block first
            if self._stopped:
                return 0  # no batch is taken any more: the end, for Arrow's reading thread
            self._ahead += 1
        with memoryview(buffer) as view:  # a whole block, unless the stream ends
            size = 0
            while size < len(view):
                got = self._read_some(view[size:])
                if not got:
                    break
                size += got
        return size

    def _read_some(self, view: memoryview) -> int:
        if self._head:
            size = min(len(view), len(self._head))
            view[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        return self._rest.readinto(view)

    def batches(self, reader: arrow_csv.CSVStreamingReader) -> Iterator[pa.RecordBatch]:
        """The reader's batches, each taken one block off what is read ahead."""
        while True:
            with self._turn:
                self._asked += 1
                self._asking = self._asked
            try:
                batch = reader.read_next_batch()  # waits without the GIL
            except StopIteration:
                return
            finally:
                with self._turn:
                    self._asking = None
            with self._turn:
                self._ahead = max(0, self._ahead - 1)
                self._turn.notify_all()
            yield batch

    def stop(self, *, wait: float = 0.0) -> None:
        """No more batches are taken: the reading thread no longer waits, and reads no more
        (``wait``: up to that many seconds for a read in progress to end)."""
        with self._turn:
            self._stopped = True
            self._turn.notify_all()
            self._turn.wait_for(lambda: not self._inside, timeout=wait)


# Readers not stopped yet: stopped at exit, so that no reading thread of Arrow's is still in
# Python while the interpreter finalizes (a generator left unfinished and never closed).
_UNFINISHED: weakref.WeakSet[_Paced] = weakref.WeakSet()


@atexit.register
def _stop_unfinished() -> None:
    for paced in list(_UNFINISHED):
        paced.stop(wait=1.0)


def _locate(
    first: list[str], name: str, column: str, model: Model | None, known: list[str] | None
) -> tuple[list[str], int, bool]:
    """The partition's column names, the wanted column's index, and whether row 1 is data."""
    if model is not None:
        names = [cell.strip() for cell in first] if model.csv.header else list(model.columns)
        if column not in names:
            # Only model.json's names are quoted: a "header" row that is really data (the
            # model says there is a header, the file has none) must not reach the message.
            raise MissingColumn(
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
    raise MissingColumn(
        f"{name}: no model.json, and the first row is not a header naming column {column!r}"
    )


def _check_width(row: list[str], width: int, name: str, line: int) -> None:
    if len(row) != width:
        raise SourceMalformed(f"{name}: line {line} has {len(row)} fields, expected {width}")
