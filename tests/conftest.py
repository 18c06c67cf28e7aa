"""Shared fixtures: real local parts for every test that needs them.

- one Azurite per test session (each test gets its own container, queue and table names);
- a fresh Snapchat sandbox per test, with one connection's credentials and one audience;
- an installed Runtime built from environment settings, exactly as the Functions host would;
- for the fast tier, ``fast_app``: the same app on the in-memory storage fakes
  (``devtools.storage_fakes``) and the sandbox answering in process, no server started.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from devtools.azurite import Azurite
from devtools.sandbox_transport import mount
from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.storage_fakes import FakeStorage
from shared import runtime
from shared.adapters.local_token import read_or_create
from shared.core.settings import HOSTED_MARKERS, Settings
from shared.entry import localworker
from shared.runtime import Runtime, Storage

CLIENT_ID = "client-6c1e3f"
CLIENT_SECRET = "s3cr3t-Client-Value-9d8e7f6a"
REFRESH_TOKEN = "refresh-Token-Value-1a2b3c4d5e6f"
AUDIENCE = "aud-high-value-01"
STATE_KEY = "5e" * 32  # mirror-sync state key (tests only)


# Tests that use one of these run real local parts (Azurite, the sandbox, the Key Vault fake):
# the integration tier. Modules that start such parts themselves mark themselves.
INTEGRATION_FIXTURES = {"azurite", "blob_service", "sandbox", "app", "vault", "fake",
                        "rotating_sandbox", "vault_app"}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _fast_tier_starts_no_server(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test outside the integration tier that starts a local server fails: mark it."""
    if request.node.get_closest_marker("integration") is not None:
        return
    from devtools.keyvault_fake import KeyVaultFake  # noqa: PLC0415

    def refuse(self: object) -> None:
        raise AssertionError(
            f"{type(self).__name__} started in a test not marked integration; mark it "
            "(pytestmark = pytest.mark.integration) or use one of INTEGRATION_FIXTURES"
        )

    for server in (Azurite, SnapchatSandbox, KeyVaultFake):
        monkeypatch.setattr(server, "__enter__", refuse)


@pytest.fixture(autouse=True)
def _no_network_beyond_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection a test makes to an address other than loopback fails the test."""
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (
            host.startswith("127.") or host in ("::1", "localhost") or sock.family == socket.AF_UNIX
        ):
            raise AssertionError(f"test tried to reach {host} beyond loopback")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as emulator:
        yield emulator


@pytest.fixture
def blob_service(azurite: Azurite) -> Iterator[BlobServiceClient]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        yield service


@pytest.fixture
def sandbox() -> Iterator[SnapchatSandbox]:
    with SnapchatSandbox() as server:
        server.add_client(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
        server.add_audience(AUDIENCE)
        yield server


@dataclass
class App:
    """The settings, definitions and runtime of one test's app instance."""

    env: dict[str, str]
    exports_file: Path
    container: str
    runtime: Runtime

    def rebuild(self, monkeypatch: pytest.MonkeyPatch, **changes: str) -> Runtime:
        """Apply setting changes and build a fresh runtime from them (as a restart would)."""
        for name, value in changes.items():
            monkeypatch.setenv(name, value)
            self.env[name] = value
        self.runtime.http.close()
        self.runtime = runtime.build(Settings.from_env())
        sync_definitions(self.runtime, self.exports_file)
        runtime.install(self.runtime)
        return self.runtime


def sync_definitions(rt: Runtime, path: Path) -> None:
    """Make the definitions store hold exactly the file's entries, as an operator's
    ``definitions import --prune`` would, but unchecked: tests also store broken entries, to
    see that the app sets them aside (as it must with any an older version left)."""
    document = json.loads(path.read_text("utf-8"))
    store = rt.definition_store
    for kind, key in (("connection", "connections"), ("export", "exports")):
        wanted: dict[str, Any] = {}
        for index, entry in enumerate(document.get(key) or []):
            name = entry.get("name") if isinstance(entry, dict) else None
            usable = isinstance(name, str) and name and "~" not in name and "/" not in name
            wanted[name if usable else f"entry-{index}"] = entry
        stored = {e.name: e for e in store.current(kind)}  # type: ignore[arg-type]
        for name, entry in wanted.items():
            have = stored.get(name)
            if have is None or have.document != entry:
                store.put(kind, name, entry, etag=have.etag if have else None, by="test")  # type: ignore[arg-type]
        for name in set(stored) - set(wanted):
            store.delete(kind, name, etag=stored[name].etag, by="test")  # type: ignore[arg-type]
    rt.forget_definitions()


def local_token() -> dict[str, str]:
    """The header that carries local mode's token, as a script sends it (the app's token
    file for the runtime installed now)."""
    token = read_or_create(runtime.current().settings.local_token_file)
    return {"X-Local-Token": token}


def local_request(
    method: str, url: str, *, body: bytes = b"", headers: dict[str, str] | None = None, **rest: Any
) -> func.HttpRequest:
    """A request as a script sends it to the app in local mode: with the local token, and a
    body (if any) typed as JSON; ``headers`` add to these or replace them."""
    typed = {"Content-Type": "application/json"} if body else {}
    return func.HttpRequest(
        method, url, body=body, headers={**local_token(), **typed, **(headers or {})}, **rest
    )


def export_definition(name: str, container: str, path: str, **overrides: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "name": name,
        "source": {"container": container, "path": path},
        "audience_id": AUDIENCE,
        "connection": "main",
        "columns": {"email": "EMail"},
        "enabled": True,
        "data_transfer_acknowledged": True,
    }
    definition.update(overrides)
    return definition


def write_definitions(path: Path, exports: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps({"connections": [{"name": "main"}], "exports": exports}))


@pytest.fixture
def app(
    azurite: Azurite,
    sandbox: SnapchatSandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[App]:
    """An app wired to Azurite and the sandbox, with one export ``high-value`` defined."""
    suffix = secrets.token_hex(4)
    container = f"ci-{suffix}"
    exports_file = tmp_path / "exports.json"
    write_definitions(
        exports_file,
        [export_definition("high-value", container, "CustomerInsights_t1/BlobExport/HighValue")],
    )
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "EXPORTS_FILE": str(exports_file),
        "JOBS_QUEUE": f"jobs-{suffix}",
        "RUNS_TABLE": f"runs{suffix}",
        "STATE_CONTAINER": f"state-{suffix}",
        "SPILL_CONTAINER": f"spill-{suffix}",
        "SNAPCHAT_API_URL": sandbox.api_url,
        "SNAPCHAT_TOKEN_URL": sandbox.token_url,
        "SNAPSHOT_SETTLE_SECONDS": "0",
        "RETRY_MAX_SECONDS": "20",
        "SECRET_SNAPCHAT_MAIN_CLIENT_ID": CLIENT_ID,
        "SECRET_SNAPCHAT_MAIN_CLIENT_SECRET": CLIENT_SECRET,
        "SECRET_SNAPCHAT_MAIN_REFRESH_TOKEN": REFRESH_TOKEN,
        "SECRET_EXPORTER_STATE_KEY": STATE_KEY,
        "LOCAL_SECRETS_FILE": str(tmp_path / "local-state" / "secrets.json"),
        # HTTP tests call the handlers on loopback as the local admin, unless they send the
        # platform's principal header (see test_sign_in_and_roles.py).
        "LOCAL_PRINCIPAL": "admin",
    }
    for name in ("KEY_VAULT_URL", "EXPORT_STORAGE", "UPLOAD_BATCH_SIZE", "WEBSITE_AUTH_ENABLED",
                 *HOSTED_MARKERS):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    built = runtime.build(Settings.from_env())
    runtime.install(built)
    state = App(env=env, exports_file=exports_file, container=container, runtime=built)
    yield state
    state.runtime.http.close()
    runtime.install(None)


@pytest.fixture
def rotating_sandbox(app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[SnapchatSandbox]:
    """A sandbox that hands out a new refresh token with every grant (and retires the old),
    with the app pointed at it."""
    with SnapchatSandbox(rotate_refresh_tokens=True) as server:
        server.add_client(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
        server.add_audience(AUDIENCE)
        app.rebuild(monkeypatch, SNAPCHAT_API_URL=server.api_url,
                    SNAPCHAT_TOKEN_URL=server.token_url)  # fmt: skip
        yield server


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


# --------------------------------------------------------------------------- the fast tier's app

# A connection string the settings accept; never used: the storage is FakeStorage.
FAKE_CONNECTION = ("DefaultEndpointsProtocol=http;AccountName=fake;AccountKey=ZmFrZQ==;"
                   "BlobEndpoint=http://127.0.0.1:9/fake;QueueEndpoint=http://127.0.0.1:9/fake;"
                   "TableEndpoint=http://127.0.0.1:9/fake")  # fmt: skip


@dataclass
class FastApp:
    """An app on the in-memory storage fakes and the sandbox answering in process: the
    real adapters, orchestration and queue delivery, no server (the fast tier)."""

    env: dict[str, str]
    storage: FakeStorage
    sandbox: SnapchatSandbox
    runtime: Runtime
    container: str

    def rebuild(
        self, monkeypatch: pytest.MonkeyPatch, storage: Storage | None = None, **changes: str
    ) -> Runtime:
        """A fresh runtime with these setting changes (a restart), on the same storage or
        on ``storage`` (one that wraps it)."""
        for name, value in changes.items():
            monkeypatch.setenv(name, value)
            self.env[name] = value
        self.runtime.http.close()
        self.runtime = runtime.build(Settings.from_env(), storage=storage or self.storage)
        mount(self.runtime.http, self.sandbox)
        runtime.install(self.runtime)
        return self.runtime

    def write_snapshot(self, emails: list[str], partitions: int = 1) -> set[str]:
        """One snapshot of ``emails`` in ``partitions`` files; the digests it holds."""
        blobs = self.storage.blobs(self.runtime.settings.export_storage)
        with contextlib.suppress(ResourceExistsError):
            blobs.create_container(self.container)
        for part in range(partitions):
            rows = "".join(f"{i},{e}\n" for i, e in enumerate(emails) if i % partitions == part)
            blobs.get_blob_client(
                self.container, f"{FAST_PATH}/2026/11/05/1200/HighValue_{part + 1}.csv"
            ).upload_blob(("CustomerId,EMail\n" + rows).encode(), overwrite=True)
        return {hashlib.sha256(e.encode()).hexdigest() for e in emails}

    def deliver(self, max_deliveries: int = 1000) -> int:
        """Hand queued jobs to the real queue handlers until the queue is empty."""
        import function_app  # noqa: PLC0415 - imported late: it builds the app on import

        return localworker.drain(
            "", self.runtime.settings.jobs_queue, handle=function_app.export_worker,
            give_up=function_app.export_gave_up, max_deliveries=max_deliveries,
            open_queue=self.storage.queue,
        )  # fmt: skip


FAST_PATH = "CustomerInsights_t1/BlobExport/HighValue"


@pytest.fixture
def fast_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FastApp]:
    """An app on the storage fakes and an in-process sandbox, with export ``high-value``."""
    sandbox = SnapchatSandbox()  # not started: answered in process
    sandbox.add_client(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
    sandbox.add_audience(AUDIENCE)
    container = "ci-fast"
    exports_file = tmp_path / "exports.json"
    write_definitions(exports_file, [export_definition("high-value", container, FAST_PATH)])
    env = {
        "AzureWebJobsStorage": FAKE_CONNECTION,
        "EXPORTS_FILE": str(exports_file),
        "JOBS_QUEUE": "jobs",
        "RUNS_TABLE": "runs",
        "STATE_CONTAINER": "state",
        "SPILL_CONTAINER": "spill",
        "SNAPSHOT_SETTLE_SECONDS": "0",
        "RETRY_MAX_SECONDS": "5",
        "SECRET_SNAPCHAT_MAIN_CLIENT_ID": CLIENT_ID,
        "SECRET_SNAPCHAT_MAIN_CLIENT_SECRET": CLIENT_SECRET,
        "SECRET_SNAPCHAT_MAIN_REFRESH_TOKEN": REFRESH_TOKEN,
        "SECRET_EXPORTER_STATE_KEY": STATE_KEY,
        "LOCAL_SECRETS_FILE": str(tmp_path / "local-state" / "secrets.json"),
        "LOCAL_PRINCIPAL": "admin",
        **mount(requests.Session(), sandbox),  # the sandbox's URLs
    }
    for name in ("KEY_VAULT_URL", "EXPORT_STORAGE", "UPLOAD_BATCH_SIZE", "WEBSITE_AUTH_ENABLED",
                 *HOSTED_MARKERS):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    storage = FakeStorage()
    built = runtime.build(Settings.from_env(), storage=storage)
    mount(built.http, sandbox)
    runtime.install(built)
    state = FastApp(env=env, storage=storage, sandbox=sandbox, runtime=built, container=container)
    yield state
    state.runtime.http.close()
    runtime.install(None)
