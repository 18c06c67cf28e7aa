"""Adapter for the Snapchat credentials: Azure Key Vault, or environment variables locally.

Both stores answer the same two calls by secret name, so the export code never knows which
one it has. Locally, secret ``snapchat-main-client-id`` is read from the variable
``SECRET_SNAPCHAT_MAIN_CLIENT_ID``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Protocol

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.keyvault.secrets import SecretClient

from shared.definitions import Connection
from shared.errors import ConfigurationError, StorageError

log = logging.getLogger(__name__)


class SecretStore(Protocol):
    def get(self, name: str) -> str:
        """The secret's current value; ConfigurationError when it is missing or empty."""
        ...

    def set(self, name: str, value: str) -> None:
        """Store a new value (a new version, in Key Vault)."""
        ...


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)


def credentials(store: SecretStore, connection: Connection) -> Credentials:
    return Credentials(
        client_id=store.get(connection.client_id_secret),
        client_secret=store.get(connection.client_secret_secret),
        refresh_token=store.get(connection.refresh_token_secret),
    )


def environment_name(secret: str) -> str:
    return "SECRET_" + secret.upper().replace("-", "_")


class EnvironmentSecrets:
    """Secrets from ``SECRET_*`` variables: for local runs without an Azure account."""

    def __init__(self, env: MutableMapping[str, str] | None = None) -> None:
        self._env = os.environ if env is None else env

    def get(self, name: str) -> str:
        value = self._env.get(environment_name(name), "").strip()
        if not value:
            raise ConfigurationError(
                f"secret {name!r}: not set (environment variable {environment_name(name)})"
            )
        return value

    def set(self, name: str, value: str) -> None:
        self._env[environment_name(name)] = value


class KeyVaultSecrets:
    def __init__(self, client: SecretClient) -> None:
        self._client = client

    def get(self, name: str) -> str:
        try:
            value = self._client.get_secret(name).value
        except ResourceNotFoundError:
            raise ConfigurationError(
                f"secret {name!r}: not found in Key Vault {self._client.vault_url}"
            ) from None
        except AzureError as exc:
            raise _translate(exc, f"read secret {name!r}") from None
        if not value or not value.strip():
            raise ConfigurationError(
                f"secret {name!r}: empty in Key Vault {self._client.vault_url}"
            )
        return value.strip()

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
