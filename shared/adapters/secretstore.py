"""Adapter for the Snapchat credentials: Azure Key Vault, or environment variables locally.

Both stores answer the same two calls by secret name, so the export code never knows which
one it has. Locally, secret ``snapchat-main-client-id`` is read from the variable
``SECRET_SNAPCHAT_MAIN_CLIENT_ID``, unless the app stored a newer value in the local secret
file (see ``EnvironmentSecrets``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.keyvault.secrets import SecretClient

from shared.core.definitions import Connection
from shared.core.errors import ConfigurationError, SecretMissing, StorageError

log = logging.getLogger(__name__)


class SecretStore(Protocol):
    def get(self, name: str) -> str:
        """The secret's current value; ConfigurationError when it is missing or empty."""
        ...

    def set(self, name: str, value: str) -> None:
        """Store a new value (a new version, in Key Vault)."""
        ...

    def present(self, name: str) -> bool | None:
        """Whether the secret has a value, without reading it where the store allows
        (Key Vault: its versions' metadata); None when the store could not say."""
        ...


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)


@dataclass(frozen=True)
class ClientApp:
    """The Snapchat app a connection uses: what a Connect needs before it has a token."""

    client_id: str
    client_secret: str = field(repr=False)


# The connection's own secrets, by the names its name fixes: the only secrets these read or
# write, whatever a definition says (shared.core.definitions.Connection).


def credentials(store: SecretStore, connection: Connection) -> Credentials:
    return Credentials(
        client_id=store.get(connection.client_id_secret),
        client_secret=store.get(connection.client_secret_secret),
        refresh_token=store.get(connection.refresh_token_secret),
    )


def client_app(store: SecretStore, connection: Connection) -> ClientApp:
    return ClientApp(
        client_id=store.get(connection.client_id_secret),
        client_secret=store.get(connection.client_secret_secret),
    )


def store_credentials(store: SecretStore, connection: Connection, found: Credentials) -> None:
    store.set(connection.client_id_secret, found.client_id)
    store.set(connection.client_secret_secret, found.client_secret)
    store.set(connection.refresh_token_secret, found.refresh_token)


def store_refresh_token(store: SecretStore, connection: Connection, value: str) -> None:
    store.set(connection.refresh_token_secret, value)


def environment_name(secret: str) -> str:
    return "SECRET_" + secret.upper().replace("-", "_")


class EnvironmentSecrets:
    """Secrets from ``SECRET_*`` variables, and what the app itself stored since in a local
    secret file: for local runs without an Azure account. Never used in Azure.

    The file (``LOCAL_SECRETS_FILE``) keeps what ``set`` stores (a refresh token Snapchat
    rotated, or what ``connect`` obtained) across processes, so that the next run still
    works. Each entry remembers a fingerprint of the ``SECRET_*`` value it replaced: when the
    operator changes that variable, the variable wins again. The file and its folder are
    made readable by the user only, and a file others can read is refused.
    """

    def __init__(
        self, env: MutableMapping[str, str] | None = None, file: Path | None = None
    ) -> None:
        self._env = os.environ if env is None else env
        self._file = file
        self._lock = threading.Lock()

    @property
    def file(self) -> Path | None:
        return self._file

    def get(self, name: str) -> str:
        seed = self._env.get(environment_name(name), "").strip()
        stored = self._read().get(name)
        if isinstance(stored, dict) and stored.get("replaces") in (_fingerprint(seed), None):
            value = str(stored.get("value") or "").strip()
            if value:
                return value
        if not seed:
            raise SecretMissing(
                f"secret {name!r}: not set (environment variable {environment_name(name)})"
            )
        return seed

    def present(self, name: str) -> bool | None:
        try:
            self.get(name)
        except ConfigurationError:
            return False
        return True

    def set(self, name: str, value: str) -> None:
        if self._file is None:
            self._env[environment_name(name)] = value
            return
        seed = self._env.get(environment_name(name), "").strip()
        with self._lock, self._locked_file():  # two processes may rotate tokens at once
            entries = self._read()
            entries[name] = {"value": value, "replaces": _fingerprint(seed)}
            self._write(entries)

    @contextlib.contextmanager
    def _locked_file(self) -> Iterator[None]:
        """An exclusive lock on a file beside the secret file, across processes (where the
        platform has ``fcntl``; elsewhere only this process's lock applies)."""
        assert self._file is not None
        try:
            import fcntl  # noqa: PLC0415 - POSIX only
        except ImportError:
            yield
            return
        self._file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(self._file.with_name(self._file.name + ".lock"),
                             os.O_CREAT | os.O_RDWR, 0o600)  # fmt: skip
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock

    def _read(self) -> dict[str, Any]:
        if self._file is None:
            return {}
        try:
            mode = self._file.stat().st_mode
            if mode & 0o077:
                raise ConfigurationError(
                    f"local secret file {self._file}: readable by others; run "
                    f"chmod 600 {self._file} (it holds Snapchat credentials)"
                )
            document = json.loads(self._file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"local secret file {self._file}: cannot be read ({type(exc).__name__}); "
                "delete it to fall back to the SECRET_* variables"
            ) from None
        return document if isinstance(document, dict) else {}

    def _write(self, entries: dict[str, Any]) -> None:
        assert self._file is not None
        folder = self._file.parent
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".secrets-")
            with os.fdopen(descriptor, "w", encoding="utf-8") as out:  # mkstemp: mode 0600
                json.dump(entries, out)
            os.replace(temporary, self._file)
        except OSError as exc:
            raise ConfigurationError(
                f"local secret file {self._file}: cannot be written ({type(exc).__name__})"
            ) from None


def _fingerprint(seed: str) -> str:
    """Which SECRET_* value an entry of the local file replaced (not the value itself)."""
    return hashlib.sha256(seed.encode()).hexdigest()[:16] if seed else ""


class KeyVaultSecrets:
    def __init__(self, client: SecretClient) -> None:
        self._client = client

    def get(self, name: str) -> str:
        try:
            value = self._client.get_secret(name).value
        except ResourceNotFoundError:
            raise SecretMissing(
                f"secret {name!r}: not found in Key Vault {self._client.vault_url}"
            ) from None
        except AzureError as exc:
            raise _translate(exc, f"read secret {name!r}") from None
        if not value or not value.strip():
            raise SecretMissing(f"secret {name!r}: empty in Key Vault {self._client.vault_url}")
        return value.strip()

    def present(self, name: str) -> bool | None:
        """From the versions' metadata (the Secrets User role may read it): no value is
        fetched. An empty value is not seen this way; a run reports it."""
        try:
            versions = self._client.list_properties_of_secret_versions(name)
            return any(version.enabled is not False for version in versions)
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            log.warning("Key Vault: could not look at secret %s: %s", name, type(exc).__name__)
            return None

    def set(self, name: str, value: str) -> None:
        try:
            self._client.set_secret(name, value)
        except AzureError as exc:
            raise _translate(exc, f"write secret {name!r}") from None


def _translate(exc: AzureError, action: str) -> Exception:
    denied = isinstance(exc, ClientAuthenticationError) or (
        isinstance(exc, HttpResponseError) and exc.status_code in (401, 403)
    )
    if denied:
        return ConfigurationError(f"Key Vault: the app's identity may not {action}")
    log.warning("Key Vault failed to %s: %s", action, type(exc).__name__)
    return StorageError(f"Key Vault: could not {action} ({type(exc).__name__})")
