"""The app's settings: read from the environment once, validated once, frozen afterwards.

``SETTINGS`` is the one list of every setting the app reads. The table in
docs/configuration.md, ``local.settings.json.example`` and the Bicep template are checked
against it by the tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from shared.core.errors import SettingsInvalid
from shared.core.setting_reader import Reader, shown

APP_ROOT = Path(__file__).resolve().parents[2]  # the app folder: host.json, exports.json
MAX_BATCH_SIZE = 100_000  # Snapchat's limit of identifiers per users request
# The local principals LOCAL_PRINCIPAL may name, with the object ID each signs in with
# ("header": local mode, but only with the principal header a request carries).
LOCAL_PRINCIPALS = {
    "admin": "00000000-0000-4000-8000-00000000000a",
    "operator": "00000000-0000-4000-8000-00000000000b",
    "reader": "00000000-0000-4000-8000-00000000000c",
    "header": "",
}
# Variables a hosting platform sets (App Service and Functions, Container Apps, Kubernetes):
# with any of them the app is hosted, and trusts only the platform's sign-in. (Not
# WEBSITE_HOSTNAME: Core Tools sets it to localhost:7071 for ``func start`` too.)
HOSTED_MARKERS = (
    "WEBSITE_INSTANCE_ID",
    "WEBSITE_SITE_NAME",
    "CONTAINER_APP_NAME",
    "KUBERNETES_SERVICE_HOST",
)


def hosted(env: Mapping[str, str]) -> bool:
    """Whether a hosting platform runs the app (rather than a developer's machine)."""
    return any(env.get(name, "").strip() for name in HOSTED_MARKERS)


@dataclass(frozen=True)
class SettingSpec:
    name: str
    default: str | None
    meaning: str
    in_azure: bool = True  # False: only meaningful locally (connection strings, local secrets)


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "AzureWebJobsStorage",
        None,
        "Connection string of the app's own storage (queue, run table); locally Azurite's.",
        in_azure=False,
    ),
    SettingSpec(
        "AzureWebJobsStorage__blobServiceUri",
        None,
        "Blob endpoint of the app's own storage (mirror-sync state) with a managed identity.",
    ),
    SettingSpec(
        "AzureWebJobsStorage__queueServiceUri",
        None,
        "Queue endpoint of the app's own storage when it is reached with a managed identity.",
    ),
    SettingSpec(
        "AzureWebJobsStorage__tableServiceUri",
        None,
        "Table endpoint of the app's own storage when it is reached with a managed identity.",
    ),
    SettingSpec(
        "AzureWebJobsStorage__clientId",
        None,
        "Client ID of the user-assigned managed identity used for storage and Key Vault.",
    ),
    SettingSpec(
        "EXPORT_STORAGE",
        None,
        "Connection string of the account Customer Insights exports into; defaults to the "
        "app's own storage.",
        in_azure=False,
    ),
    SettingSpec(
        "EXPORT_STORAGE__blobServiceUri",
        None,
        "Blob endpoint of the Customer Insights export account, reached with the managed identity.",
    ),
    SettingSpec(
        "EXPORTS_FILE",
        "exports.json",
        "Path of the export definitions (JSON), relative to the app folder unless absolute.",
    ),
    SettingSpec("JOBS_QUEUE", "export-jobs", "Queue that carries one message per export run."),
    SettingSpec("RUNS_TABLE", "exportruns", "Table that holds one record per run."),
    SettingSpec(
        "STATE_CONTAINER",
        "exporter-state",
        "Container in the app's own storage for mirror-sync state (encrypted digests).",
    ),
    SettingSpec(
        "SPILL_CONTAINER",
        "exporter-spill",
        "Container in the app's own storage where a run spills digests (encrypted, deleted "
        "when the run ends) to keep its memory flat.",
    ),
    SettingSpec(
        "SPILL_MEMORY_MB",
        "16",
        "Digests a run holds in memory (MiB) before it spills them; 0 spills every block "
        "read. Peak memory grows a little with it, not with the segment's size (measured: "
        "under 400 MB at 16 from 1M to 20M profiles, docs/performance.md).",
    ),
    SettingSpec(
        "STATE_RETENTION_DAYS",
        "30",
        "Mirror state no export uses any more (its export deleted outside the app, or moved to "
        "another audience) is deleted by the timer once it is this many days old.",
    ),
    SettingSpec(
        "SPLIT_ABOVE_MB",
        "2048",
        "A snapshot larger than this (MiB of CSV, all partitions together) is exported by "
        "several jobs on the queue, one reader per partition, which the platform spreads over "
        "instances; 0 splits every run of two or more partitions.",
    ),
    SettingSpec(
        "EXPORT_SCHEDULE",
        "0 */15 * * * *",
        "NCRONTAB schedule (UTC) of the timer that looks for new snapshots; read by the host.",
    ),
    SettingSpec(
        "KEY_VAULT_URL",
        None,
        "Vault holding the Snapchat secrets. Unset: secrets come from SECRET_* variables.",
    ),
    SettingSpec(
        "LOCAL_SECRETS_FILE",
        None,
        "Without KEY_VAULT_URL: the file (readable by you only) where the app keeps secrets "
        "it stores itself, such as a rotated refresh token; default "
        "~/.local/state/ci-snapchat-export/secrets.json.",
        in_azure=False,
    ),
    SettingSpec(
        "LOCAL_PRINCIPAL",
        None,
        "Local development only, on loopback: turns the local mode on, and says who a request "
        "without a signed-in principal is (admin, operator or reader; header: nobody, the "
        "request must carry X-MS-CLIENT-PRINCIPAL); every request must also carry the local "
        "token (python -m shared local-token); refused when hosted (503).",
        in_azure=False,
    ),
    SettingSpec(
        "SNAPCHAT_API_URL", "https://adsapi.snapchat.com/v1", "Base URL of the Snap Marketing API."
    ),
    SettingSpec(
        "PUBLIC_URL",
        None,
        "The app's address as browsers see it (https://host, no path). Unset: "
        "https://$WEBSITE_HOSTNAME when hosted, the request's own address locally. Set it "
        "for a custom domain or a front door; the console's cross-site check and the Connect "
        "Snapchat redirect URI use it.",
    ),
    SettingSpec(
        "SNAPCHAT_AUTHORIZE_URL",
        "https://accounts.snapchat.com/login/oauth2/authorize",
        "Snapchat's OAuth authorize page, where the console's Connect Snapchat sends the browser.",
    ),
    SettingSpec(
        "SNAPCHAT_TOKEN_URL",
        "https://accounts.snapchat.com/login/oauth2/access_token",
        "Snapchat's OAuth token endpoint.",
    ),
    SettingSpec(
        "UPLOAD_BATCH_SIZE",
        str(MAX_BATCH_SIZE),
        "Identifiers per upload request (1 to 100000).",
    ),
    SettingSpec("HTTP_TIMEOUT_SECONDS", "60", "Timeout of every single HTTP request to Snapchat."),
    SettingSpec("RETRY_ATTEMPTS", "6", "Attempts per Snapchat request before the run fails."),
    SettingSpec(
        "RETRY_MAX_SECONDS", "300", "Upper bound of the time one request may spend retrying."
    ),
    SettingSpec(
        "SNAPCHAT_REQUESTS_PER_SECOND",
        "10",
        "Most requests per second one access token sends (Snap allows 10 on average).",
    ),
    SettingSpec(
        "RUN_LEASE_SECONDS",
        "60",
        "How long a worker's hold on an export lasts without renewal; a crashed worker's run "
        "is resumed by the next delivery after this.",
    ),
    SettingSpec(
        "SNAPSHOT_SETTLE_SECONDS",
        "120",
        "Without a model.json naming its partitions, a snapshot counts as complete once its "
        "newest file is this old (still being written).",
    ),
    SettingSpec(
        "SNAPSHOT_RECHECK_SECONDS",
        "30",
        "After an event for a snapshot still being written, its check is queued again this "
        "many seconds later (at most 20 times; then the timer decides).",
    ),
    SettingSpec(
        "TIMER_MAX_ATTEMPTS",
        "3",
        "How often the timer retries a snapshot whose runs failed before it waits for a new one.",
    ),
    SettingSpec(
        "AUDIENCE_CHECK_MINUTES",
        "5,15,60",
        "Minutes after a run's end when its audience check reads what Snapchat made of it "
        "(queued); after the last, the timer checks again every that many minutes.",
    ),
    SettingSpec("AUDIENCE_CHECK_LIMIT", "10", "Audience checks per run at most (1 to 100)."),
    SettingSpec(
        "MATCH_DROP_PERCENT",
        "20",
        "A run's match rate this many percent below the previous runs' median warns.",
    ),
)

_SPECS = {spec.name: spec for spec in SETTINGS}
_DEFAULTS = {spec.name: spec.default for spec in SETTINGS}


@dataclass(frozen=True)
class StorageTarget:
    """How to reach one storage account: a connection string, or endpoints + managed identity."""

    connection_string: str | None = field(default=None, repr=False)
    blob_url: str | None = None
    queue_url: str | None = None
    table_url: str | None = None
    client_id: str | None = None

    def __repr__(self) -> str:  # the connection string may carry an account key
        shown = "connection string" if self.connection_string else "managed identity"
        return f"StorageTarget({shown}, blob={self.blob_url}, queue={self.queue_url})"


@dataclass(frozen=True)
class Settings:
    app_storage: StorageTarget
    export_storage: StorageTarget
    exports_file: Path
    jobs_queue: str
    runs_table: str
    state_container: str
    spill_container: str
    spill_memory_bytes: int
    split_above_bytes: int
    state_retention_days: int
    key_vault_url: str | None
    local_secrets_file: Path
    local_principal: str | None
    in_azure: bool  # hosted: App Service/Functions (or any container host) runs the app
    platform_sign_in: bool  # the platform's built-in authentication is on (WEBSITE_AUTH_ENABLED)
    snapchat_api_url: str
    snapchat_token_url: str
    snapchat_authorize_url: str
    export_schedule: str
    public_url: str | None  # https://host as browsers see the app; None: the request's own
    upload_batch_size: int
    http_timeout_seconds: float
    retry_attempts: int
    retry_max_seconds: float
    snapshot_settle_seconds: float
    snapshot_recheck_seconds: float
    timer_max_attempts: int
    requests_per_second: float
    run_lease_seconds: float
    audience_check_minutes: tuple[int, ...]
    audience_check_limit: int
    match_drop_percent: float

    @property
    def local_token_file(self) -> Path:
        """Local mode's token (``shared.adapters.local_token``): beside the local secrets."""
        return self.local_secrets_file.parent / "local-token"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting; raise one SettingsInvalid naming all the problems found."""
        reader = Reader(os.environ if env is None else env, _DEFAULTS)
        in_azure = hosted(reader.env)
        app_storage, export_storage = _storage(reader)
        settings = cls(
            app_storage=app_storage,
            export_storage=export_storage,
            exports_file=exports_path(reader.text("EXPORTS_FILE")),
            jobs_queue=reader.name("JOBS_QUEUE"),
            runs_table=reader.name("RUNS_TABLE", table=True),
            state_container=reader.name("STATE_CONTAINER"),
            spill_container=reader.name("SPILL_CONTAINER"),
            spill_memory_bytes=reader.integer("SPILL_MEMORY_MB", 0, 4096) << 20,
            split_above_bytes=reader.integer("SPLIT_ABOVE_MB", 0, 1 << 30) << 20,
            state_retention_days=reader.integer("STATE_RETENTION_DAYS", 1, 3650),
            key_vault_url=reader.url("KEY_VAULT_URL", https=True),
            local_secrets_file=local_secrets_path(reader.optional("LOCAL_SECRETS_FILE")),
            local_principal=_local_principal(reader),
            in_azure=in_azure,
            platform_sign_in=reader.env.get("WEBSITE_AUTH_ENABLED", "").lower() == "true",
            snapchat_api_url=reader.url("SNAPCHAT_API_URL", secure=True) or "",
            snapchat_token_url=reader.url("SNAPCHAT_TOKEN_URL", secure=True) or "",
            snapchat_authorize_url=reader.url("SNAPCHAT_AUTHORIZE_URL", secure=True) or "",
            export_schedule=reader.text("EXPORT_SCHEDULE") or "",
            public_url=_public_url(reader, in_azure),
            upload_batch_size=reader.integer("UPLOAD_BATCH_SIZE", 1, MAX_BATCH_SIZE),
            http_timeout_seconds=reader.number("HTTP_TIMEOUT_SECONDS", 0.1, 600),
            retry_attempts=reader.integer("RETRY_ATTEMPTS", 1, 20),
            retry_max_seconds=reader.number("RETRY_MAX_SECONDS", 0, 3600),
            snapshot_settle_seconds=reader.number("SNAPSHOT_SETTLE_SECONDS", 0, 86400),
            snapshot_recheck_seconds=reader.number("SNAPSHOT_RECHECK_SECONDS", 0, 3600),
            timer_max_attempts=reader.integer("TIMER_MAX_ATTEMPTS", 1, 100),
            requests_per_second=reader.number("SNAPCHAT_REQUESTS_PER_SECOND", 0.1, 20),
            run_lease_seconds=reader.number("RUN_LEASE_SECONDS", 3, 3600),
            audience_check_minutes=reader.minutes("AUDIENCE_CHECK_MINUTES"),
            audience_check_limit=reader.integer("AUDIENCE_CHECK_LIMIT", 1, 100),
            match_drop_percent=reader.number("MATCH_DROP_PERCENT", 1, 100),
        )
        if reader.problems:
            raise SettingsInvalid(reader.problems)
        return settings


def _storage(reader: Reader) -> tuple[StorageTarget, StorageTarget]:
    """The app's own storage (AzureWebJobsStorage), and where Customer Insights' exports are
    (EXPORT_STORAGE, or the app's own)."""
    app_connection = reader.optional("AzureWebJobsStorage")
    app_storage = StorageTarget(
        connection_string=connection_string(app_connection) if app_connection else None,
        blob_url=reader.url("AzureWebJobsStorage__blobServiceUri"),
        queue_url=reader.url("AzureWebJobsStorage__queueServiceUri"),
        table_url=reader.url("AzureWebJobsStorage__tableServiceUri"),
        client_id=reader.optional("AzureWebJobsStorage__clientId"),
    )
    if not app_storage.connection_string and not (
        app_storage.queue_url and app_storage.table_url and app_storage.blob_url
    ):
        reader.problems.append(
            "AzureWebJobsStorage: set a connection string, or all of "
            "AzureWebJobsStorage__blobServiceUri, __queueServiceUri and __tableServiceUri"
        )
    export_conn = reader.optional("EXPORT_STORAGE")
    export_conn = connection_string(export_conn) if export_conn else None
    export_blob = reader.url("EXPORT_STORAGE__blobServiceUri")
    if not (export_conn or export_blob):
        return app_storage, app_storage
    export = StorageTarget(
        connection_string=export_conn, blob_url=export_blob, client_id=app_storage.client_id
    )
    return app_storage, export


# Azurite's well-known development account: public, documented, and not a secret.
_DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey="
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


def _public_url(reader: Reader, in_azure: bool) -> str | None:
    """PUBLIC_URL, or when hosted https:// and the platform's WEBSITE_HOSTNAME."""
    value = reader.url("PUBLIC_URL", https=in_azure)
    if value is not None:
        if urlparse(value).path.strip("/"):
            reader.problems.append("PUBLIC_URL: give the scheme and host only, no path")
        return value
    host = reader.env.get("WEBSITE_HOSTNAME", "").strip()
    return f"https://{host}" if in_azure and host else None


def connection_string(value: str) -> str:
    """A storage connection string as the Azure SDKs take it: the Functions host's shorthand
    ``UseDevelopmentStorage=true`` (Azurite on its default ports) spelled out."""
    if value.replace(" ", "").lower() == "usedevelopmentstorage=true":
        return _DEVELOPMENT_STORAGE
    return value


def local_secrets_path(value: str | None) -> Path:
    """LOCAL_SECRETS_FILE, or the default under the user's state folder (XDG_STATE_HOME)."""
    if value:
        return Path(value).expanduser().resolve()
    state = os.environ.get("XDG_STATE_HOME", "").strip() or str(Path.home() / ".local" / "state")
    return Path(state) / "ci-snapchat-export" / "secrets.json"


def exports_path(value: str | None = None) -> Path:
    """Where the export definitions are: EXPORTS_FILE, relative to the app folder."""
    if value is None:
        value = os.environ.get("EXPORTS_FILE", "").strip() or _SPECS["EXPORTS_FILE"].default
    path = Path(value or "exports.json")
    return path if path.is_absolute() else APP_ROOT / path


def _local_principal(reader: Reader) -> str | None:
    value = reader.optional("LOCAL_PRINCIPAL")
    if value is None:
        return None
    if hosted(reader.env):
        reader.problems.append(
            "LOCAL_PRINCIPAL: for local development only, and the app runs in Azure: "
            "remove the setting (sign-in is the platform's there)"
        )
        return None
    if value not in LOCAL_PRINCIPALS:
        reader.problems.append(
            f"LOCAL_PRINCIPAL: {shown(value)!r} is not one of {', '.join(LOCAL_PRINCIPALS)}"
        )
        return None
    return value
