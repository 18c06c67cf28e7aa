"""The storage fakes hold to the real thing: the same tests, on Azurite and on the fakes.

Every test here runs twice: against Azurite (integration tier) and against
``devtools.storage_fakes`` (fast tier). What they pin is what the adapters rely on: ETag
conditions (412 on a stale replace or delete, 409 on inserting what exists), all-or-nothing
transactions, the query filters the adapters send, queue visibility and dequeue counts, blob
ranges, listings, overwrite conditions and staged blocks. A fake that drifts fails its half.
"""

from __future__ import annotations

import base64
import secrets
import time
from datetime import datetime
from typing import Any, Protocol

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import (
    TableClient,
    TableTransactionError,
    UpdateMode,
)
from azure.storage.blob import BlobBlock, BlobServiceClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from devtools.storage_fakes import FakeStorage
from shared.core.settings import StorageTarget


class Account(Protocol):
    def table(self, name: str) -> TableClient: ...
    def queue(self, name: str) -> QueueClient: ...
    def blobs(self) -> BlobServiceClient: ...
    def wait(self, seconds: float) -> None: ...


class Azurite:
    def __init__(self, connection_string: str) -> None:
        self._connection = connection_string

    def table(self, name: str) -> TableClient:
        return TableClient.from_connection_string(self._connection, name)

    def queue(self, name: str) -> QueueClient:
        return QueueClient.from_connection_string(
            self._connection, name, message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )  # fmt: skip

    def blobs(self) -> BlobServiceClient:
        return BlobServiceClient.from_connection_string(self._connection)

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)


class Fakes:
    def __init__(self) -> None:
        self._storage = FakeStorage()

    def table(self, name: str) -> TableClient:
        return self._storage.table(name)

    def queue(self, name: str) -> QueueClient:
        return self._storage.queue(name)

    def blobs(self) -> BlobServiceClient:
        return self._storage.blobs(StorageTarget())

    def wait(self, seconds: float) -> None:
        self._storage.advance(seconds)


@pytest.fixture(params=["fakes", pytest.param("azurite", marks=pytest.mark.integration)])
def account(request: pytest.FixtureRequest) -> Account:
    if request.param == "fakes":
        return Fakes()
    return Azurite(request.getfixturevalue("azurite").connection_string)


@pytest.fixture
def table(account: Account) -> TableClient:
    client = account.table(f"contract{secrets.token_hex(4)}")
    client.create_table()
    return client


@pytest.fixture
def queue(account: Account) -> QueueClient:
    client = account.queue(f"contract-{secrets.token_hex(4)}")
    client.create_queue()
    return client


@pytest.fixture
def container(account: Account) -> Any:
    return account.blobs().create_container(f"contract-{secrets.token_hex(4)}")


def row(key: str, partition: str = "p", **values: Any) -> dict[str, Any]:
    return {"PartitionKey": partition, "RowKey": key, **values}


# --------------------------------------------------------------------------- tables


def test_an_insert_of_an_existing_entity_is_refused_with_409(table: TableClient) -> None:
    table.create_entity(row("a", n=1))
    with pytest.raises(ResourceExistsError) as refused:
        table.create_entity(row("a", n=2))
    assert refused.value.status_code == 409
    assert table.get_entity("p", "a")["n"] == 1


def test_a_replace_on_a_stale_etag_is_refused_with_412(table: TableClient) -> None:
    first = table.create_entity(row("a", n=1))["etag"]
    second = table.update_entity(row("a", n=2), mode=UpdateMode.REPLACE, etag=first,
                                 match_condition=MatchConditions.IfNotModified)["etag"]  # fmt: skip
    assert second != first
    assert table.get_entity("p", "a").metadata["etag"] == second
    with pytest.raises(ResourceModifiedError) as refused:
        table.update_entity(row("a", n=3), mode=UpdateMode.REPLACE, etag=first,
                            match_condition=MatchConditions.IfNotModified)  # fmt: skip
    assert refused.value.status_code == 412
    assert table.get_entity("p", "a")["n"] == 2
    with pytest.raises(ResourceNotFoundError):
        table.update_entity(row("missing", n=1), mode=UpdateMode.REPLACE)


def test_a_delete_on_a_stale_etag_is_refused_and_a_missing_entity_is_no_error(
    table: TableClient,
) -> None:
    first = table.create_entity(row("a", n=1))["etag"]
    current = table.upsert_entity(row("a", n=2), mode=UpdateMode.REPLACE)["etag"]
    with pytest.raises(ResourceModifiedError) as refused:
        table.delete_entity("p", "a", etag=first, match_condition=MatchConditions.IfNotModified)
    assert refused.value.status_code == 412
    table.delete_entity("p", "a", etag=current, match_condition=MatchConditions.IfNotModified)
    with pytest.raises(ResourceNotFoundError):
        table.get_entity("p", "a")
    table.delete_entity("p", "a")  # the SDK answers a 404 on delete with nothing
    table.delete_entity("p", "a", etag=current, match_condition=MatchConditions.IfNotModified)


def test_merge_keeps_other_properties_and_replace_drops_them(table: TableClient) -> None:
    table.create_entity(row("a", kept="yes", n=1))
    table.update_entity(row("a", n=2), mode=UpdateMode.MERGE)
    assert dict(table.get_entity("p", "a")) == row("a", kept="yes", n=2)
    table.upsert_entity(row("a", n=3), mode=UpdateMode.MERGE)
    assert dict(table.get_entity("p", "a")) == row("a", kept="yes", n=3)
    table.upsert_entity(row("a", n=4), mode=UpdateMode.REPLACE)
    assert dict(table.get_entity("p", "a")) == row("a", n=4)


def test_values_come_back_as_the_sdk_reads_them(table: TableClient) -> None:
    answer = table.create_entity(
        row("a", text="t", count=7, share=0.5, whole=2.0, flag=True, gone=None)
    )
    found = table.get_entity("p", "a")
    assert dict(found) == row("a", text="t", count=7, share=0.5, whole=2.0, flag=True)
    assert type(found["whole"]) is float
    assert found.metadata["etag"] == answer["etag"]
    assert isinstance(found.metadata["timestamp"], datetime)
    with pytest.raises(TypeError):  # a plain int is an Int32
        table.create_entity(row("b", wide=2**40))


def test_a_transaction_is_all_or_nothing(table: TableClient) -> None:
    stale = table.create_entity(row("a", n=0))["etag"]
    etag = table.upsert_entity(row("a", n=1), mode=UpdateMode.REPLACE)["etag"]
    with pytest.raises(TableTransactionError) as refused:
        table.submit_transaction([("create", row("b", n=1)), ("create", row("a", n=9))])
    assert refused.value.status_code == 409
    with pytest.raises(TableTransactionError) as modified:
        table.submit_transaction([
            ("upsert", row("b", n=1)),
            ("update", row("a", n=9), {"mode": UpdateMode.REPLACE, "etag": stale,
                                       "match_condition": MatchConditions.IfNotModified}),
        ])  # fmt: skip
    assert modified.value.status_code == 412
    assert [e["RowKey"] for e in table.list_entities()] == ["a"]
    answers = table.submit_transaction([
        ("update", row("a", n=2), {"mode": UpdateMode.REPLACE, "etag": etag,
                                   "match_condition": MatchConditions.IfNotModified}),
        ("create", row("b", n=1)),
    ])  # fmt: skip
    assert [answer["etag"] for answer in answers] == [
        table.get_entity("p", key).metadata["etag"] for key in ("a", "b")
    ]
    table.submit_transaction([("delete", row("a")), ("delete", row("b"))])
    assert list(table.list_entities()) == []


FILTERS = [  # the shapes the adapters send, and what each finds of the entities below
    ("PartitionKey eq @p", {"p": "x"}, ["x/a", "x/a~1", "x/a~2", "x/b"]),
    ("PartitionKey eq 'y'", {}, ["y/a"]),
    ("PartitionKey eq @p and snapshot eq @s", {"p": "x", "s": "s1"}, ["x/a", "x/b"]),
    ("PartitionKey eq 'x' and entry eq 'current'", {}, ["x/a~1"]),
    ("PartitionKey eq @p and RowKey gt @low and RowKey lt @high",
     {"p": "x", "low": "a~", "high": "a~~"}, ["x/a~1", "x/a~2"]),
    ("PartitionKey eq @p and RowKey ge @low and RowKey lt @high",
     {"p": "x", "low": "a", "high": "a~"}, ["x/a"]),
    ("PartitionKey eq @p and expires_at lt @now", {"p": "x", "now": "2026-02"}, ["x/b"]),
    ("(PartitionKey eq 'x' or PartitionKey eq 'y') and changed_by ne @seed",
     {"seed": "seed"}, ["x/a~2", "y/a"]),
]  # fmt: skip


@pytest.mark.parametrize(("where", "parameters", "expected"), FILTERS)
def test_the_adapters_query_filters_find_the_same_entities(
    table: TableClient, where: str, parameters: dict[str, Any], expected: list[str]
) -> None:
    for entity in [
        row("a", "x", snapshot="s1", changed_by="seed"),
        row("a~1", "x", entry="current", changed_by="seed"),
        row("a~2", "x", entry="old", changed_by="someone"),  # no snapshot: never matches it
        row("b", "x", snapshot="s1", expires_at="2026-01-01T00:00:00Z"),  # no changed_by
        row("a", "y", snapshot="s2", changed_by="someone", expires_at="2027"),
        row("a", "z", snapshot="s1"),
    ]:
        table.create_entity(entity)
    found = table.query_entities(where, parameters=parameters, results_per_page=1000)
    assert [f"{e['PartitionKey']}/{e['RowKey']}" for e in found] == expected


def test_a_missing_table_is_not_found(account: Account) -> None:
    missing = account.table(f"missing{secrets.token_hex(4)}")
    with pytest.raises(ResourceNotFoundError):
        missing.get_entity("p", "a")
    with pytest.raises(ResourceNotFoundError):
        missing.create_entity(row("a"))
    with pytest.raises(ResourceNotFoundError):
        list(missing.query_entities("PartitionKey eq @p", parameters={"p": "p"}))
    missing.create_table()
    with pytest.raises(ResourceExistsError):
        missing.create_table()


# --------------------------------------------------------------------------- queues


def test_a_received_message_is_hidden_until_its_visibility_timeout(
    account: Account, queue: QueueClient
) -> None:
    queue.send_message('{"job": 1}')
    [first] = queue.receive_messages(max_messages=1, visibility_timeout=1)
    assert (first.content, first.dequeue_count) == ('{"job": 1}', 1)
    assert list(queue.receive_messages(max_messages=1, visibility_timeout=1)) == []
    account.wait(1.6)
    [second] = queue.receive_messages(max_messages=1, visibility_timeout=30)
    assert (second.id, second.dequeue_count) == (first.id, 2)
    with pytest.raises(HttpResponseError) as stale:
        queue.delete_message(first)  # its pop receipt is not the message's any more
    assert stale.value.status_code == 400
    queue.delete_message(second)
    assert list(queue.receive_messages(max_messages=1, visibility_timeout=1)) == []
    with pytest.raises(ResourceNotFoundError):
        queue.delete_message(second)


def test_a_released_message_is_delivered_again_at_once(queue: QueueClient) -> None:
    queue.send_message("one")
    queue.send_message("two")
    [taken] = queue.receive_messages(max_messages=1, visibility_timeout=60)
    assert taken.content == "one"
    queue.update_message(taken.id, pop_receipt=taken.pop_receipt, visibility_timeout=0)
    again = list(queue.receive_messages(max_messages=5, visibility_timeout=60))
    assert sorted((m.content, m.dequeue_count) for m in again) == [("one", 2), ("two", 1)]


def test_a_message_sent_hidden_appears_later(account: Account, queue: QueueClient) -> None:
    queue.send_message("later", visibility_timeout=1)
    assert list(queue.receive_messages(max_messages=1, visibility_timeout=1)) == []
    account.wait(1.6)
    assert [m.content for m in queue.receive_messages(max_messages=1)] == ["later"]


def test_a_missing_queue_is_not_found_and_creating_one_twice_is_refused(
    account: Account,
) -> None:
    missing = account.queue(f"missing-{secrets.token_hex(4)}")
    with pytest.raises(ResourceNotFoundError):
        list(missing.receive_messages(max_messages=1))
    missing.create_queue()
    with pytest.raises(ResourceExistsError):
        missing.create_queue()


# --------------------------------------------------------------------------- blobs


def test_ranges_are_cut_at_the_blob_s_end(container: Any) -> None:
    content = bytes(range(256)) * 4
    container.upload_blob("a/1", content)
    assert container.download_blob("a/1").readall() == content
    assert b"".join(container.download_blob("a/1").chunks()) == content
    assert container.download_blob("a/1", offset=10, length=5).readall() == content[10:15]
    assert container.download_blob("a/1", offset=1000, length=100).readall() == content[1000:]
    with pytest.raises(HttpResponseError) as beyond:
        container.download_blob("a/1", offset=2000, length=10).readall()
    assert beyond.value.status_code == 416
    with pytest.raises(ResourceNotFoundError):
        container.download_blob("a/missing").readall()


def test_an_upload_over_a_blob_needs_overwrite_or_its_etag(container: Any) -> None:
    blob = container.upload_blob("b", b"one")  # the blob's client
    first = blob.get_blob_properties().etag
    with pytest.raises(ResourceExistsError):
        container.upload_blob("b", b"two")
    second = blob.upload_blob(b"two", overwrite=True)["etag"]
    with pytest.raises(ResourceModifiedError) as stale:
        blob.upload_blob(b"three", overwrite=True, etag=first,
                         match_condition=MatchConditions.IfNotModified)  # fmt: skip
    assert stale.value.status_code == 412
    blob.upload_blob(b"three", overwrite=True, etag=second,
                     match_condition=MatchConditions.IfNotModified)  # fmt: skip
    properties = blob.get_blob_properties()
    assert (properties.size, container.download_blob("b").readall()) == (5, b"three")


def test_listing_by_prefix_is_by_name_with_size_and_age(account: Account, container: Any) -> None:
    for name in ("run/2", "run/1", "other/1"):
        container.upload_blob(name, name.encode() * 3, length=len(name) * 3)
    listed = list(container.list_blobs(name_starts_with="run/"))
    assert [(b.name, b.size) for b in listed] == [("run/1", 15), ("run/2", 15)]
    assert all(b.last_modified.tzinfo is not None for b in listed)
    container.delete_blob("run/1")
    assert [b.name for b in container.list_blobs()] == ["other/1", "run/2"]
    with pytest.raises(ResourceNotFoundError):
        container.delete_blob("run/1")
    gone = account.blobs().get_container_client(f"missing-{secrets.token_hex(4)}")
    assert not gone.exists()
    with pytest.raises(ResourceNotFoundError):
        list(gone.list_blobs(name_starts_with="run/"))


def test_staged_blocks_become_the_blob_when_committed(container: Any) -> None:
    blob = container.get_blob_client("state")

    def block(number: int) -> str:
        return base64.b64encode(f"{number:010d}".encode()).decode()

    blob.stage_block(block(0), b"first,")
    blob.stage_block(block(1), b"second")
    assert [b.name for b in container.list_blobs()] == []  # nothing committed yet
    blob.commit_block_list([BlobBlock(block_id=block(0)), BlobBlock(block_id=block(1))])
    assert blob.download_blob().readall() == b"first,second"
    with pytest.raises(HttpResponseError) as unknown:
        blob.commit_block_list([BlobBlock(block_id=block(7))])
    assert unknown.value.status_code == 400
    assert blob.download_blob(offset=6, length=6).readall() == b"second"
