"""Reading the email column from CSV partitions: headers, model.json, encodings, quoting."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from shared.core import csvstream
from shared.core.csvstream import ChunkReader, column_blocks, column_cells, first_invalid_utf8
from shared.core.errors import SourceError
from shared.core.layout import CsvFormat, Model


def opener(files: dict[str, bytes], chunk: int = 7) -> Callable[[str], io.RawIOBase]:
    """Serve each file in small chunks, as a blob download would."""

    def open_partition(name: str) -> io.RawIOBase:
        data = files[name]
        return ChunkReader(data[i : i + chunk] for i in range(0, len(data), chunk))

    return open_partition


READERS = ["exact", "arrow"]
_reader = "exact"


@pytest.fixture(autouse=True, params=READERS)
def reader(request: pytest.FixtureRequest) -> str:
    """Every test that goes through ``read`` runs against both readers: the export's
    (Arrow) and the exact one must agree on every file and every fault."""
    global _reader  # noqa: PLW0603 - the fixture's choice for ``read``
    _reader = request.param
    return _reader


def read(files: dict[str, bytes], model: Model | None = None, column: str = "EMail") -> list[str]:
    if _reader == "exact":
        return list(column_cells(list(files), opener(files), column=column, model=model))
    blocks = column_blocks(list(files), opener(files), columns=[column], model=model)
    return [cell for _, (cells,) in blocks for cell in cells.to_pylist()]


def model(header: bool, columns: tuple[str, ...] = ("CustomerId", "EMail", "City")) -> Model:
    return Model(columns=columns, csv=CsvFormat(header=header), partitions=())


def test_header_row_is_detected_without_a_model() -> None:
    files = {"p1.csv": b"CustomerId,email,City\n1,a@x.com,Oslo\n2,b@x.com,Rome\n"}
    assert read(files) == ["a@x.com", "b@x.com"]


def test_later_partitions_without_a_header_use_the_first_partitions_header() -> None:
    files = {
        "p1.csv": b"CustomerId,EMail,City\n1,a@x.com,Oslo\n",
        "p2.csv": b"2,b@x.com,Rome\n",
        "p3.csv": b"CustomerId,EMail,City\n3,c@x.com,Lima\n",
    }
    assert read(files) == ["a@x.com", "b@x.com", "c@x.com"]


def test_no_model_and_no_header_is_a_clear_error() -> None:
    with pytest.raises(
        SourceError, match="p1.csv: no model.json, and the first row is not a header"
    ):
        read({"p1.csv": b"1,a@x.com,Oslo\n"})


def test_model_without_headers_reads_every_row_as_data() -> None:
    files = {"p1.csv": b"1,a@x.com,Oslo\n2,b@x.com,Rome\n"}
    assert read(files, model(header=False)) == ["a@x.com", "b@x.com"]


def test_model_with_headers_skips_the_header_of_every_partition() -> None:
    files = {
        "p1.csv": b"CustomerId,EMail,City\n1,a@x.com,Oslo\n",
        "p2.csv": b"CustomerId,EMail,City\n2,b@x.com,Rome\n",
    }
    assert read(files, model(header=True)) == ["a@x.com", "b@x.com"]


def test_bom_crlf_and_quoted_fields_with_commas_quotes_and_newlines() -> None:
    data = (
        '\ufeff"CustomerId","EMail","City"\r\n'
        '"1","a@x.com","Oslo, Norway"\r\n'
        '"2","b@x.com","Line one\r\nline two"\r\n'
        '"3","c@x.com","He said ""hi"""\r\n'
    ).encode()
    assert read({"p1.csv": data}) == ["a@x.com", "b@x.com", "c@x.com"]


def test_bom_in_every_partition_is_dropped() -> None:
    files = {
        "p1.csv": "\ufeffCustomerId,EMail\n1,a@x.com\n".encode(),
        "p2.csv": "\ufeff2,b@x.com\n".encode(),
    }
    assert read(files) == ["a@x.com", "b@x.com"]
    assert read(files, column="CustomerId") == ["1", "2"]


def test_blank_lines_and_empty_partitions_are_skipped() -> None:
    files = {"p1.csv": b"CustomerId,EMail,City\n\n1,a@x.com,Oslo\n\n", "p2.csv": b""}
    assert read(files) == ["a@x.com"]


def test_other_delimiters_from_the_model() -> None:
    semicolon = Model(("CustomerId", "EMail"), CsvFormat(header=False, delimiter=";"), ())
    assert read({"p1.csv": b"1;a@x.com\n2;b@x.com\n"}, semicolon) == ["a@x.com", "b@x.com"]


def test_a_missing_column_names_the_column_and_the_partition() -> None:
    with pytest.raises(
        SourceError,
        match=r"p1.csv: no column named 'EMail'; model.json's columns are CustomerId, Mail$",
    ):
        read({"p1.csv": b"1,a@x.com\n"}, model(header=False, columns=("CustomerId", "Mail")))


def test_ragged_rows_are_an_error_with_the_line_number() -> None:
    files = {"p1.csv": b"CustomerId,EMail,City\n1,a@x.com,Oslo\n2,b@x.com\n"}
    with pytest.raises(SourceError, match="p1.csv: line 3 has 2 fields, expected 3"):
        read(files)


def test_non_utf8_bytes_are_an_error_naming_the_partition_line_and_byte() -> None:
    head = b"CustomerId,EMail\n1,a@x.com\n"
    files = {"p1.csv": head + b"2,caf\xe9@x.com\n3,b@x.com\n"}
    expected = "p1.csv: not valid UTF-8 text: the first invalid byte sequence is on line 3 "
    with pytest.raises(SourceError, match=expected + rf"\(byte {len(head) + 5}\)") as caught:
        read(files)
    assert "caf" not in str(caught.value)


def test_a_fault_on_the_last_of_200002_lines_is_reported_on_that_line() -> None:
    rows = b"".join(b"%d,person%d@example.com\n" % (i, i) for i in range(200_000))
    body = b"CustomerId,EMail\n" + rows
    files = {"big.csv": body + b"x,\xff@example.com\n"}
    with pytest.raises(SourceError, match=rf"on line 200002 \(byte {len(body) + 2}\)"):
        list(column_cells(["big.csv"], opener(files, 65_536), column="EMail", model=None))


@pytest.mark.parametrize("cut", range(1, 4))
def test_a_character_split_across_reads_is_not_a_fault(cut: int) -> None:
    data = b"a" * ((1 << 20) - cut) + "€".encode() + b"\nb\n"
    assert first_invalid_utf8(ChunkReader([data])) is None
    assert first_invalid_utf8(ChunkReader([data + b"\xe2\x82"])) == (3, len(data))


def test_a_nul_byte_is_a_damaged_file_named_with_its_line() -> None:
    head = b"CustomerId,EMail\n1,a@x.com\n"
    files = {"p1.csv": head + b"2,b\x00c@x.com\n"}
    with pytest.raises(SourceError, match=rf"p1.csv: line 3 \(byte {len(head) + 3}\) holds a NUL"):
        read(files)


def test_an_oversized_field_is_an_error_not_a_memory_problem() -> None:
    files = {"p1.csv": b"CustomerId,EMail\n1," + b"a" * 1_000_000 + b"@x.com\n"}
    with pytest.raises(SourceError, match="p1.csv: line .*field larger than field limit"):
        read(files)


def test_arrow_refuses_a_row_over_its_block_as_the_exact_reader_explains(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(csvstream, "_BLOCK", 1 << 16)
    files = {"p1.csv": b"CustomerId,EMail\n1,a@x.com\n2," + b"a" * 200_000 + b"@x.com\n"}
    blocks = column_blocks(list(files), opener(files, 4096), columns=["EMail"], model=None)
    with pytest.raises(SourceError, match="p1.csv: line 3: .*field larger than field limit"):
        list(blocks)


def test_both_readers_agree_on_a_large_export_with_every_kind_of_row() -> None:
    rows = [b"CustomerId,EMail,City\r\n"]
    for i in range(30_000):
        email = [b"p%d@x.com" % i, b'"  Q%d@X.com "' % i, b"", b'"a,""b""\n%d"' % i][i % 4]
        rows.append(b'%d,%s,"Z\xc3\xbcrich"\r\n' % (i, email))
        if i % 1000 == 0:
            rows.append(b"\r\n")
    files = {"p1.csv": b"\xef\xbb\xbf" + b"".join(rows), "p2.csv": b"".join(rows)}
    exact = list(column_cells(list(files), opener(files, 4096), column="EMail", model=None))
    blocks = column_blocks(list(files), opener(files, 4096), columns=["EMail", "City"], model=None)
    fast = [(e, c) for _, (emails, cities) in blocks
            for e, c in zip(emails.to_pylist(), cities.to_pylist(), strict=True)]  # fmt: skip
    assert [e for e, _ in fast] == exact
    assert {c for _, c in fast} == {"Z\u00fcrich"}
