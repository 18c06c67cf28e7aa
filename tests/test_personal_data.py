"""Personal data's lifecycle and the mirror-state key: purge, orphans, rotation, refused blobs.

Each test runs real mirror-mode runs against Azurite and the sandbox, then looks at what is
in the state container and what the next run does with it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

import function_app
from shared.adapters.statestore import MAGIC, key_id
from shared.entry.cli import main
from shared.runs import service
from tests.conftest import (
    AUDIENCE,
    STATE_KEY,
    App,
    export_definition,
    sync_definitions,
    write_definitions,
)
from tests.snapshots import PATH, emails, run, snapshot
from tests.test_http_api import call

pytestmark = pytest.mark.integration

NEW_KEY = "a7" * 32
OTHER_AUDIENCE = "audience-2"


@pytest.fixture
def mirror_app(app: App, monkeypatch: pytest.MonkeyPatch) -> App:
    definition = export_definition("high-value", app.container, PATH, mode="mirror")
    write_definitions(app.exports_file, [definition])
    app.rebuild(monkeypatch)
    return app


def state(app: App, blob_service: BlobServiceClient) -> ContainerClient:
    return blob_service.get_container_client(app.env["STATE_CONTAINER"])


def names(container: ContainerClient) -> set[str]:
    return {blob.name for blob in container.list_blobs()} if container.exists() else set()


def mirrored(app: App, blob_service: BlobServiceClient, day: int = 1) -> None:
    snapshot(blob_service, app.container, emails(range(40)), day=day)
    record = run(app)
    assert record.status == "succeeded", record.error


def copy_state(container: ContainerClient, audience: str, export: str = "high-value") -> str:
    """Another set with the same content (a set of another audience or export)."""
    content = container.download_blob(f"high-value/{AUDIENCE}/EMAIL_SHA256.state").readall()
    name = f"{export}/{audience}/EMAIL_SHA256.state"
    container.upload_blob(name, content, overwrite=True)
    return name


def test_purge_erases_one_audience_or_all_of_an_export_and_says_what(
    mirror_app: App, blob_service: BlobServiceClient, capsys: pytest.CaptureFixture[str]
) -> None:
    app = mirror_app
    mirrored(app, blob_service)
    container = state(app, blob_service)
    other = copy_state(container, OTHER_AUDIENCE)
    elsewhere = copy_state(container, AUDIENCE, export="another-export")
    ours = f"high-value/{AUDIENCE}/EMAIL_SHA256.state"

    status, answer, _ = call(function_app.purge_export, "POST", "exports/high-value/purge",
                             json.dumps({"audience_id": OTHER_AUDIENCE}).encode(),
                             name="high-value")  # fmt: skip
    assert status == 200, answer
    assert answer["deleted"] == [other]
    assert names(container) == {ours, elsewhere}  # the export's own audience, another export

    assert main(["purge", "high-value"]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] == [ours]
    assert names(container) == {elsewhere}  # another export's state is kept

    # The export starts afresh: everyone is added again, nobody removed.
    record = run(app)
    assert record.status == "succeeded", record.error
    assert (record.added, record.removed, record.unchanged) == (40, 0, 0)


def test_purge_is_refused_while_a_run_is_active(
    mirror_app: App, blob_service: BlobServiceClient
) -> None:
    app = mirror_app
    mirrored(app, blob_service)
    snapshot(blob_service, app.container, emails(range(50)), day=2)
    service.request_run(app.runtime, "high-value", "http")  # queued, holding the export
    status, answer, _ = call(function_app.purge_export, "POST", "exports/high-value/purge",
                             name="high-value")  # fmt: skip
    assert status == 409, answer
    assert len(names(state(app, blob_service))) == 1


def test_the_timer_removes_orphaned_state_after_the_retention_and_keeps_the_rest(
    mirror_app: App, blob_service: BlobServiceClient
) -> None:
    app = mirror_app
    mirrored(app, blob_service)
    container = state(app, blob_service)
    ours = f"high-value/{AUDIENCE}/EMAIL_SHA256.state"
    moved = copy_state(container, OTHER_AUDIENCE)  # the export used to mirror another audience
    gone = copy_state(container, AUDIENCE, export="deleted-export")  # deleted outside the app
    now = datetime.now(UTC)

    service.schedule(app.runtime, now + timedelta(days=29))  # younger than 30 days: kept
    assert names(container) == {ours, moved, gone}
    service.schedule(app.runtime, now + timedelta(days=31))
    assert names(container) == {ours}


def test_a_new_key_reads_the_old_state_and_writes_it_again_under_the_new_one(
    mirror_app: App, blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = mirror_app
    mirrored(app, blob_service)
    container = state(app, blob_service)
    blob = f"high-value/{AUDIENCE}/EMAIL_SHA256.state"

    def written_under() -> bytes:
        header = container.download_blob(blob).readall()[: len(MAGIC) + 8]
        assert header.startswith(MAGIC)
        return header[len(MAGIC) :]

    assert written_under() == key_id(bytes.fromhex(STATE_KEY))
    app.rebuild(monkeypatch, SECRET_EXPORTER_STATE_KEY=NEW_KEY,
                SECRET_EXPORTER_STATE_KEY_PREVIOUS=STATE_KEY)  # fmt: skip
    rotated = run(app)
    assert rotated.status == "succeeded", rotated.error
    assert (rotated.added, rotated.removed, rotated.unchanged) == (0, 0, 40)
    assert written_under() == key_id(bytes.fromhex(NEW_KEY))

    monkeypatch.delenv("SECRET_EXPORTER_STATE_KEY_PREVIOUS")
    app.rebuild(monkeypatch)
    after = run(app)  # the old key is no longer needed
    assert (after.status, after.unchanged) == ("succeeded", 40), after.error


def test_state_under_an_unknown_key_is_refused_and_nothing_is_sent(
    mirror_app: App, blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = mirror_app
    mirrored(app, blob_service)
    app.rebuild(monkeypatch, SECRET_EXPORTER_STATE_KEY=NEW_KEY)  # rotated, previous not kept
    record = run(app)
    assert record.status == "failed"
    assert "exporter-state-key-previous" in record.error
    assert record.batches == 0


def test_a_blob_moved_from_another_set_or_put_back_from_before_is_refused(
    mirror_app: App, blob_service: BlobServiceClient
) -> None:
    app = mirror_app
    mirrored(app, blob_service)
    container = state(app, blob_service)
    ours = f"high-value/{AUDIENCE}/EMAIL_SHA256.state"
    first = container.download_blob(ours).readall()

    # Another audience's set put in this one's place.
    copy_state(container, OTHER_AUDIENCE)
    definition = export_definition("high-value", app.container, PATH, mode="mirror",
                                   audience_id=OTHER_AUDIENCE)  # fmt: skip
    write_definitions(app.exports_file, [definition])
    sync_definitions(app.runtime, app.exports_file)
    app.runtime.forget_definitions()
    moved = run(app)
    assert moved.status == "failed"
    assert "moved from another set" in moved.error

    # The touched set's role: a state blob under the touched set's name is refused too.
    container.upload_blob(f"high-value/{AUDIENCE}/EMAIL_SHA256.touched", first, overwrite=True)
    write_definitions(app.exports_file, [export_definition("high-value", app.container, PATH,
                                                           mode="mirror")])  # fmt: skip
    sync_definitions(app.runtime, app.exports_file)
    app.runtime.forget_definitions()
    swapped = run(app)
    assert swapped.status == "failed"
    assert "moved from another set" in swapped.error
    container.delete_blob(f"high-value/{AUDIENCE}/EMAIL_SHA256.touched")

    # A newer generation is written; the old blob put back is refused.
    mirrored(app, blob_service, day=3)
    container.upload_blob(ours, first, overwrite=True)
    rolled_back = run(app)
    assert rolled_back.status == "failed"
    assert "older than" in rolled_back.error


@pytest.mark.parametrize("name", ["..", "a/b", "high-value/", "UPPER"])
def test_purge_of_a_name_no_export_can_have_is_404(mirror_app: App, name: str) -> None:
    status, answer, _ = call(function_app.purge_export, "POST", "exports/x/purge", name=name)
    assert (status, answer["error"]) == (404, "not_found")
