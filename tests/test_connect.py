"""Connecting a Snapchat account: authorize, redirect to loopback, code exchange, Key Vault."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import pytest
import requests

from devtools.keyvault_fake import KeyVaultFake, secret_client
from devtools.snapchat_sandbox import SnapchatSandbox
from shared import connect
from shared.adapters.secretstore import KeyVaultSecrets
from shared.core.definitions import default_connection
from shared.core.errors import AuthenticationError
from tests.conftest import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN
from tests.leaks import assert_no_leaks


@pytest.fixture
def vault() -> Iterator[KeyVaultFake]:
    with KeyVaultFake() as fake:
        yield fake


def browser(follow: bool = True) -> Callable[[str], None]:
    """Plays the operator's browser: opens the authorize URL and follows the redirect."""

    def open_url(url: str) -> None:
        def visit() -> None:
            with requests.Session() as session:
                session.get(url, allow_redirects=follow, timeout=10)

        threading.Thread(target=visit, daemon=True).start()

    return open_url


def test_connect_stores_the_three_secrets_without_showing_them(
    sandbox: SnapchatSandbox, vault: KeyVaultFake, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []
    store = KeyVaultSecrets(secret_client(vault, retry_total=0))

    def show(url: str) -> None:
        shown.append(url)
        browser()(url)

    with requests.Session() as session:
        connect.connect(
            store,
            default_connection("main"),
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            token_url=sandbox.token_url,
            session=session,
            show=show,
            listener=connect.CallbackListener(),
            authorize_base=sandbox.authorize_url,
        )
    assert vault.value("snapchat-main-client-id") == CLIENT_ID
    assert vault.value("snapchat-main-client-secret") == CLIENT_SECRET
    assert vault.value("snapchat-main-refresh-token") == REFRESH_TOKEN
    assert "scope=snapchat-marketing-api" in shown[0]
    assert "state=" in shown[0]
    assert_no_leaks("authorize URL", shown[0], {CLIENT_SECRET, REFRESH_TOKEN})
    assert_no_leaks("log", caplog.text, {CLIENT_SECRET, REFRESH_TOKEN})


def test_a_redirect_with_another_state_is_refused_and_nothing_stored(
    sandbox: SnapchatSandbox, vault: KeyVaultFake
) -> None:
    store = KeyVaultSecrets(secret_client(vault, retry_total=0))
    listener = connect.CallbackListener()

    def forged(url: str) -> None:
        code = sandbox.issue_code(CLIENT_ID, listener.redirect_uri)
        browser()(f"{listener.redirect_uri}?code={code}&state=someone-elses")

    with requests.Session() as session, pytest.raises(AuthenticationError, match="state"):
        connect.connect(
            store, default_connection("main"), client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
            token_url=sandbox.token_url, session=session, show=forged, listener=listener,
            authorize_base=sandbox.authorize_url,
        )  # fmt: skip
    assert vault.value("snapchat-main-refresh-token") is None


def test_paste_mode_and_a_refused_exchange(sandbox: SnapchatSandbox, vault: KeyVaultFake) -> None:
    store = KeyVaultSecrets(secret_client(vault, retry_total=0))
    redirect_uri = "https://example.invalid/callback"
    shown: list[str] = []

    def pasted() -> str:
        state = shown[0].split("state=")[1]
        code = sandbox.issue_code(CLIENT_ID, redirect_uri)
        return f"{redirect_uri}?code={code}&state={state}"

    with requests.Session() as session:
        connect.connect(
            store, default_connection("eu"), client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
            token_url=sandbox.token_url, session=session, show=shown.append, paste=pasted,
            redirect_uri=redirect_uri, authorize_base=sandbox.authorize_url,
        )  # fmt: skip
        assert vault.value("snapchat-eu-refresh-token") == REFRESH_TOKEN
        shown.clear()
        with pytest.raises(AuthenticationError, match="did not exchange the code"):
            connect.connect(
                store, default_connection("other"), client_id=CLIENT_ID,
                client_secret="wrong-secret-value", token_url=sandbox.token_url,
                session=session, show=shown.append, paste=pasted, redirect_uri=redirect_uri,
                authorize_base=sandbox.authorize_url,
            )  # fmt: skip
    assert vault.value("snapchat-other-refresh-token") is None
