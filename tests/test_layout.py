"""Finding snapshots in a blob listing and reading model.json."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.core.errors import SourceError
from shared.core.layout import BlobEntry, blob_name_from_location, read_model, snapshots

PATH = "CustomerInsights_abc/BlobExport/HighValue"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def entry(name: str, minutes: int = 0) -> BlobEntry:
    return BlobEntry(name=name, last_modified=T0 + timedelta(minutes=minutes), size=10)


def test_snapshot_folders_are_ordered_by_time_and_partitions_by_number() -> None:
    listing = [
        entry(f"{PATH}/2026/11/02/0915/HighValue_10.csv", 3),
        entry(f"{PATH}/2026/11/02/0915/HighValue_2.csv", 2),
        entry(f"{PATH}/2026/11/02/0915/HighValue_1.csv", 1),
        entry(f"{PATH}/2026/10/30/2359/HighValue_1.csv"),
        entry(f"{PATH}/2026/11/01/0000/HighValue_1.csv"),
    ]
    found = snapshots(PATH, listing)
    assert [s.id for s in found] == ["2026/10/30/2359", "2026/11/01/0000", "2026/11/02/0915"]
    newest = found[-1]
    assert newest.partitions == tuple(
        f"{PATH}/2026/11/02/0915/HighValue_{n}.csv" for n in (1, 2, 10)
    )
    assert newest.last_modified == T0 + timedelta(minutes=3)
    assert newest.folder == f"{PATH}/2026/11/02/0915"


def test_flat_files_are_snapshots_too_and_compete_by_time() -> None:
    early = int(datetime(2026, 11, 1, 8, tzinfo=UTC).timestamp())
    late = int(datetime(2026, 11, 3, 8, tzinfo=UTC).timestamp())
    listing = [
        entry(f"{PATH}_{late}.csv"),
        entry(f"{PATH}/2026/11/02/0915/HighValue_1.csv"),
        entry(f"{PATH}_{early}.csv"),
    ]
    found = snapshots(PATH, listing)
    assert [s.id for s in found] == [f"epoch-{early}", "2026/11/02/0915", f"epoch-{late}"]
    assert found[-1].partitions == (f"{PATH}_{late}.csv",)
    assert found[-1].folder is None


@pytest.mark.parametrize(
    "name",
    [
        f"{PATH}/2026/13/02/0915/HighValue_1.csv",  # no 13th month
        f"{PATH}/2026/11/02/0915/Other_1.csv",  # another table
        f"{PATH}/2026/11/02/0915/HighValue_1.csv.tmp",
        f"{PATH}/2026/11/02/HighValue_1.csv",
        f"{PATH}Extra/2026/11/02/0915/HighValue_1.csv",  # a sibling folder sharing the prefix
        f"{PATH}_notanumber.csv",
        f"{PATH}/model.json",
    ],
)
def test_files_outside_the_layout_are_ignored(name: str) -> None:
    assert snapshots(PATH, [entry(name)]) == []


def model_document(**partition_settings: object) -> bytes:
    return json.dumps(
        {
            "name": "CustomerInsights",
            "version": "1.0",
            "entities": [
                {"$type": "LocalEntity", "name": "Other", "attributes": [{"name": "X"}]},
                {
                    "$type": "LocalEntity",
                    "name": "HighValue",
                    "attributes": [{"name": "CustomerId"}, {"name": "EMail"}],
                    "partitions": [
                        {
                            "name": "HighValue_1",
                            "location": "https://acct.blob.core.windows.net/ci/"
                            f"{PATH}/2026/11/02/0915/HighValue_1.csv",
                            "fileFormatSettings": {
                                "$type": "CsvFormatSettings",
                                **partition_settings,
                            },
                        }
                    ],
                },
            ],
        }
    ).encode()


def test_model_gives_columns_header_flag_and_partitions() -> None:
    model = read_model(
        model_document(columnHeaders=True, delimiter=";"), entity="HighValue", container="ci",
        where="ci/model.json",
    )  # fmt: skip
    assert model.columns == ("CustomerId", "EMail")
    assert model.csv.header is True
    assert model.csv.delimiter == ";"
    assert model.partitions == (f"{PATH}/2026/11/02/0915/HighValue_1.csv",)


def test_column_headers_default_to_false() -> None:
    model = read_model(model_document(), entity="HighValue", container="ci", where="m")
    assert model.csv.header is False
    assert model.csv.delimiter == ","


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"entities": {}}', "no 'entities' list"),
        (model_document(), "no entity named 'Missing'"),
    ],
)
def test_bad_models_name_the_problem(document: bytes, message: str) -> None:
    entity = "Missing" if b"HighValue" in document else "HighValue"
    with pytest.raises(SourceError, match=message) as caught:
        read_model(document, entity=entity, container="ci", where="ci/x/model.json")
    assert "ci/x/model.json" in str(caught.value)


@pytest.mark.parametrize(
    "location",
    [
        "https://acct.blob.core.windows.net/ci/a/b/file.csv",
        "https://acct.dfs.core.windows.net/ci/a/b/file.csv",
        "http://127.0.0.1:10000/devstoreaccount1/ci/a/b/file.csv",
        "https://acct.blob.core.windows.net/ci/a%2Fb/file.csv",
    ],
)
def test_partition_locations_map_to_blob_names(location: str) -> None:
    assert blob_name_from_location(location, "ci", "m") == "a/b/file.csv"


def test_a_location_in_another_container_is_an_error() -> None:
    with pytest.raises(SourceError, match="not in container 'ci'"):
        blob_name_from_location("https://acct.blob.core.windows.net/other/f.csv", "ci", "m")


def test_a_partition_location_is_never_echoed_with_its_query_string() -> None:
    location = "https://acct.blob.core.windows.net/other/f.csv?sv=2024-01-01&sig=s3cr3tsignature"
    with pytest.raises(SourceError) as raised:
        blob_name_from_location(location, "ci", "model.json")
    assert "https://acct.blob.core.windows.net/other/f.csv" in str(raised.value)
    assert "sig=" not in str(raised.value)
    assert "s3cr3tsignature" not in str(raised.value)
