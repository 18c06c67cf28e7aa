"""The composition root: settings plus one adapter per external system, built once.

Handlers and the command line call ``current()``; tests build a ``Runtime`` of their own
(pointing at Azurite, the Snapchat sandbox and the Key Vault fake, or, in the fast tier, at
the in-memory storage fakes through ``build(settings, storage=...)``) and ``install`` it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import requests
from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import HttpTransport
from azure.data.tables import TableClient
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from shared.adapters.blobsource import BlobSource
from shared.adapters.connection_status import TokenRefreshes
from shared.adapters.definition_store import DefinitionStore
from shared.adapters.jobqueue import JobQueue, encode_policy
from shared.adapters.request_slots import RequestSlots
from shared.adapters.runlog import RunLog
from shared.adapters.secretstore import (
    EnvironmentSecrets,
    KeyVaultSecrets,
    SecretStore,
    credentials,
)
from shared.adapters.snapchat import RetryPolicy, SnapchatClient
from shared.adapters.spillstore import SpillStore, random_attempt
from shared.adapters.state_generations import StateGenerations
from shared.adapters.statestore import KEY_SECRET, PREVIOUS_KEY_SECRET, StateStore, parse_key
from shared.core.definitions import Connection, Definitions
from shared.core.errors import ConfigurationError, ExportError
from shared.core.privacy import SECRETS
from shared.core.settings import Settings, StorageTarget

log = logging.getLogger(__name__)

# Arrow's blocks from the C library's allocator: Arrow's default keeps freed memory for
# reuse, which measured 45 MB more peak memory for a 1M-profile run.
pa.set_memory_pool(pa.system_memory_pool())


@dataclass
class Runtime:
    settings: Settings
    definition_store: DefinitionStore
    source: BlobSource
    runs: RunLog
    jobs: JobQueue
    secrets: SecretStore
    state_container: ContainerClient
    spill_container: ContainerClient
    http: requests.Session = field(default_factory=requests.Session)
    _loaded: tuple[float, Definitions] | None = field(default=None, repr=False)
    _definitions_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def definitions(self) -> Definitions:
        """The export and connection definitions as stored now (read again after a few
        seconds, so that a change made elsewhere is picked up without a restart; at once
        after a change made through this runtime)."""
        with self._definitions_lock:
            loaded = self._loaded
            if loaded is None or time.monotonic() - loaded[0] > _DEFINITIONS_FRESH_SECONDS:
                found = self.definition_store.definitions()
                loaded = self._loaded = (time.monotonic(), found)
            return loaded[1]

    def forget_definitions(self) -> None:
        self._loaded = None

    def spill(self, run_id: str) -> SpillStore:
        """Where an attempt of run ``run_id`` spills digests, under a key of its own."""
        attempt = random_attempt()
        return SpillStore(self.spill_container, f"{run_id}/", f"{run_id}/{attempt}/")

    def state(self) -> StateStore:
        """Mirror-sync state, encrypted with the key in secret ``exporter-state-key`` (and
        read, while keys are rotated, with ``exporter-state-key-previous`` too)."""
        previous: bytes | None = None  # None: no rotation under way
        try:
            value = self.secrets.get(PREVIOUS_KEY_SECRET)
        except ConfigurationError:
            pass
        else:
            SECRETS.add(value)
            previous = parse_key(value)
        return StateStore(self.state_container, self.state_key(), previous=previous,
                          generations=StateGenerations(self.runs))  # fmt: skip

    def state_key(self) -> bytes:
        key = self.secrets.get(KEY_SECRET)
        SECRETS.add(key)
        return parse_key(key)

    def snapchat(self, connection: Connection, *, shared_slots: bool = False) -> SnapchatClient:
        """A client for one connection, with its credentials read fresh from the store.
        ``shared_slots``: it sends beside other instances (a split run's job), so it keeps the
        rate limit with them through ``RequestSlots``."""
        found = credentials(self.secrets, connection)
        rate = self.settings.requests_per_second
        pace = RequestSlots(self.runs, connection.name, rate).wait if shared_slots else None
        return SnapchatClient(
            self.http,
            api_url=self.settings.snapchat_api_url,
            token_url=self.settings.snapchat_token_url,
            credentials=found,
            policy=RetryPolicy(
                attempts=self.settings.retry_attempts,
                max_seconds=self.settings.retry_max_seconds,
                timeout=self.settings.http_timeout_seconds,
            ),
            on_new_refresh_token=lambda value: self._store_rotated(connection, value),
            stored_refresh_token=lambda: self.secrets.get(connection.refresh_token_secret),
            on_access_token=lambda: self._note_token(connection),
            requests_per_second=rate,
            connection=connection,
            pace=pace,
        )

    def _note_token(self, connection: Connection) -> None:
        """Remember when the connection last worked (the console shows it); a failure to
        remember it never fails the run."""
        try:
            TokenRefreshes(self.runs).record(connection.name)
        except ExportError as exc:
            log.warning("Connection %s: %s", connection.name, exc)

    def _store_rotated(self, connection: Connection, value: str) -> None:
        """Keep a refresh token Snapchat rotated, before the old one is relied on again."""
        try:
            self.secrets.set(connection.refresh_token_secret, value)
        except ExportError as exc:
            raise ConfigurationError(
                f"Snapchat issued a new refresh token for connection {connection.name!r} but "
                f"it could not be stored ({exc}); the app needs Key Vault Secrets Officer on "
                f"secret {connection.refresh_token_secret!r}. If later runs fail with "
                "invalid_grant, connect the Snapchat account again."
            ) from None


class Storage(Protocol):
    """Where the adapters' storage clients come from: Azure (``AzureStorage``), or the fast
    tier's in-memory fakes (``devtools.storage_fakes.FakeStorage``)."""

    def table(self, name: str) -> TableClient: ...

    def queue(self, name: str) -> QueueClient: ...

    def blobs(self, target: StorageTarget) -> BlobServiceClient: ...


class AzureStorage:
    """The SDK's clients for the app's storage account, as the settings say (a connection
    string or managed identity). ``transport``: the HTTP transport of the table and queue
    clients, when not the SDK's own (the tests' storage faults, ``devtools.storage_faults``);
    ``credential``: the app's identity, shared with Key Vault (made lazily, once)."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: HttpTransport[Any, Any] | None = None,
        credential: Callable[[], TokenCredential] | None = None,
    ) -> None:
        self._app = settings.app_storage
        self._credential = credential or _credential(settings)
        self._given: dict[str, Any] = {"transport": transport} if transport else {}

    def table(self, name: str) -> TableClient:
        if self._app.connection_string:
            return TableClient.from_connection_string(
                self._app.connection_string, name, **self._given
            )
        assert self._app.table_url  # Settings.from_env guarantees both endpoints
        return TableClient(self._app.table_url, name, credential=self._credential(),
                           **self._given)  # fmt: skip

    def queue(self, name: str) -> QueueClient:
        if self._app.connection_string:
            return QueueClient.from_connection_string(
                self._app.connection_string, name, message_encode_policy=encode_policy(),
                **self._given,
            )  # fmt: skip
        assert self._app.queue_url
        return QueueClient(self._app.queue_url, name, credential=self._credential(),
                           message_encode_policy=encode_policy(), **self._given)  # fmt: skip

    def blobs(self, target: StorageTarget) -> BlobServiceClient:
        return _blob_service(target, self._credential)


def build(
    settings: Settings,
    *,
    storage: Storage | None = None,
    storage_transport: HttpTransport[Any, Any] | None = None,
) -> Runtime:
    """Connect every adapter as the settings say. ``storage``: where the storage clients
    come from (by default ``AzureStorage``, on ``storage_transport`` if given)."""
    credential = _credential(settings)
    storage = storage or AzureStorage(settings, transport=storage_transport, credential=credential)
    secrets: SecretStore = EnvironmentSecrets(file=settings.local_secrets_file)
    if settings.key_vault_url:
        secrets = KeyVaultSecrets(SecretClient(settings.key_vault_url, credential()))
    app_blobs = storage.blobs(settings.app_storage)
    runs = RunLog(storage.table(settings.runs_table))
    return Runtime(
        settings=settings,
        definition_store=DefinitionStore(runs, seed_file=settings.exports_file),
        source=BlobSource(storage.blobs(settings.export_storage)),
        runs=runs,
        jobs=JobQueue(storage.queue(settings.jobs_queue)),
        secrets=secrets,
        state_container=app_blobs.get_container_client(settings.state_container),
        spill_container=app_blobs.get_container_client(settings.spill_container),
    )


_DEFINITIONS_FRESH_SECONDS = 5.0

# Partitions are read as a stream of 4 MiB ranges: the SDK's default first request would
# fetch up to 32 MiB of a partition at once.
_RANGE = 4 * 1024 * 1024


def _blob_service(
    target: StorageTarget, credential: Callable[[], TokenCredential]
) -> BlobServiceClient:
    # Uploads (spilled runs) go in blocks of the same size: the SDK would otherwise hold a
    # whole blob of up to 64 MiB, and a copy of it, to send it in one request.
    sizes: dict[str, Any] = {"max_single_get_size": _RANGE, "max_chunk_get_size": _RANGE,
                             "max_single_put_size": _RANGE, "max_block_size": _RANGE}  # fmt: skip
    if target.connection_string:
        return BlobServiceClient.from_connection_string(target.connection_string, **sizes)
    if target.blob_url is None:
        raise ConfigurationError(
            "EXPORT_STORAGE__blobServiceUri or AzureWebJobsStorage__blobServiceUri: required "
            "when storage is reached with a managed identity"
        )
    return BlobServiceClient(target.blob_url, credential=credential(), **sizes)


def _credential(settings: Settings) -> Callable[[], TokenCredential]:
    """A lazily made DefaultAzureCredential, bound to the user-assigned identity if named."""
    made: list[TokenCredential] = []

    def get() -> TokenCredential:
        if not made:
            made.append(
                DefaultAzureCredential(managed_identity_client_id=settings.app_storage.client_id)
            )
        return made[0]

    return get


_lock = threading.Lock()
_current: Runtime | None = None


def current() -> Runtime:
    """The process's runtime, built from the environment on first use."""
    global _current  # noqa: PLW0603 - one runtime per process, by design
    with _lock:
        if _current is None:
            _current = build(Settings.from_env())
        return _current


def install(runtime: Runtime | None) -> None:
    """Use ``runtime`` from now on (tests); ``None`` rebuilds from the environment next time."""
    global _current  # noqa: PLW0603
    with _lock:
        _current = runtime
