"""Flat memory: spilled digests give the same audience and the very same requests.

Each test reads one realistic export (``devtools.ci_export``: empty, malformed, repeated and
already-hashed emails) through the real queue handler, with buckets made small so that a few
thousand rows make several of them, and compares what the sandbox received."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from azure.storage.blob import BlobServiceClient

from devtools.ci_export import write_export
from devtools.snapchat_sandbox import SnapchatSandbox
from shared.adapters import spillstore
from shared.export import digest_pool
from tests.conftest import AUDIENCE, App, export_definition, write_definitions
from tests.snapshots import PATH, run

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def small_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest_pool, "BUCKET_TARGET", 400)  # 3,000 rows: 8 buckets


def requests_of(sandbox: SnapchatSandbox, since: int) -> list[tuple[str, str | None]]:
    """The accepted users requests after the first ``since``: method and content."""
    return [(r.method, r.content) for r in sandbox.requests()[since:]
            if r.path.endswith("/users") and r.status == 200]  # fmt: skip


def spill_files(app: App, blob_service: BlobServiceClient) -> list[str]:
    container = blob_service.get_container_client(app.env["SPILL_CONTAINER"])
    return [b.name for b in container.list_blobs()] if container.exists() else []


def test_spilling_or_not_gives_the_same_requests_and_audience(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    generated = write_export(blob_service, container=app.container, path=PATH,
                             profiles=3000, partitions=4)  # fmt: skip
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="150", SPILL_MEMORY_MB="64")
    held = run(app)
    assert held.status == "succeeded", held.error
    assert held.spilled_bytes == 0
    in_memory = requests_of(sandbox, 0)

    app.rebuild(monkeypatch, SPILL_MEMORY_MB="0")  # spill after every block read
    before = len(sandbox.requests())
    spilled = run(app)
    assert spilled.status == "succeeded", spilled.error
    assert spilled.spilled_bytes >= 32 * len(generated.expected)
    assert requests_of(sandbox, before) == in_memory
    assert len(in_memory) > 8  # several buckets, each in batches
    assert sandbox.identifiers(AUDIENCE) == generated.expected_hex
    for record in (held, spilled):
        assert (record.rows_read, record.uploaded) == (3000, len(generated.expected))
        assert (record.empty, record.invalid, record.prehashed, record.duplicates) == (
            generated.empty,
            generated.invalid,
            generated.prehashed,
            generated.duplicates,
        )
    assert spill_files(app, blob_service) == []  # deleted when the run ended


def test_mirror_mode_spilled_adds_and_removes_exactly_what_changed(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    definition = export_definition("high-value", app.container, PATH, mode="mirror",
                                   max_removal_percent=100)  # fmt: skip
    write_definitions(app.exports_file, [definition])
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="100", SPILL_MEMORY_MB="0")
    first = write_export(blob_service, container=app.container, path=PATH, profiles=2500,
                         partitions=3, seed=1)  # fmt: skip
    assert run(app).status == "succeeded"
    assert sandbox.identifiers(AUDIENCE) == first.expected_hex
    blob_service.get_container_client(app.container).delete_blobs(*first.partitions)
    second = write_export(blob_service, container=app.container, path=PATH, profiles=3000,
                          partitions=3, seed=2)  # fmt: skip
    record = run(app)
    assert record.status == "succeeded", record.error
    assert sandbox.identifiers(AUDIENCE) == second.expected_hex
    kept = first.expected & second.expected
    assert (record.added, record.removed, record.unchanged) == (
        len(second.expected - kept),
        len(first.expected - kept),
        len(kept),
    )
    assert record.spilled_bytes > 0
    assert spill_files(app, blob_service) == []


def test_spilled_files_hold_no_digest_and_are_gone_after_a_failed_run(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    generated = write_export(blob_service, container=app.container, path=PATH,
                             profiles=2000, partitions=2)  # fmt: skip
    app.rebuild(monkeypatch, SPILL_MEMORY_MB="0")
    kept: dict[str, bytes] = {}
    write = spillstore.SpillStore.write_frames

    def keep_a_copy(self: spillstore.SpillStore, schema: str, sizes: list[int],
                    frame: Callable[[int], bytes]) -> spillstore.Run:  # fmt: skip
        found = write(self, schema, sizes, frame)
        kept[found.name] = blob_service.get_blob_client(
            app.env["SPILL_CONTAINER"], found.name).download_blob().readall()  # fmt: skip
        return found

    monkeypatch.setattr(spillstore.SpillStore, "write_frames", keep_a_copy)
    sandbox.inject("403", times=50, path_contains="/users")
    record = run(app)
    assert record.status == "failed"
    assert record.spilled_bytes > 0
    assert kept
    for content in kept.values():
        for digest in generated.expected:
            assert digest not in content
            assert digest.hex().encode() not in content
    assert spill_files(app, blob_service) == []
