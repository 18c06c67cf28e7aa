"""Connecting a Snapchat account: authorize, redirect to loopback, code exchange, Key Vault."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from devtools.keyvault_fake import KeyVaultFake, secret_client
from devtools.snapchat_sandbox import SnapchatSandbox
from shared.adapters.secretstore import Credentials, KeyVaultSecrets
from shared.adapters.snapchat import RetryPolicy, SnapchatClient
from shared.connections import terminal
from shared.core.definitions import default_connection
from shared.core.errors import AuthenticationError, RedirectRefused
from tests.conftest import AUDIENCE, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN
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
        terminal.connect(
            store,
            default_connection("main"),
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            token_url=sandbox.token_url,
            session=session,
            show=show,
            listener=terminal.CallbackListener(),
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
    listener = terminal.CallbackListener()

    def forged(url: str) -> None:
        code = sandbox.issue_code(CLIENT_ID, listener.redirect_uri)
        browser()(f"{listener.redirect_uri}?code={code}&state=someone-elses")

    with requests.Session() as session, pytest.raises(AuthenticationError, match="state"):
        terminal.connect(
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
        query = parse_qs(urlparse(shown[0]).query)
        code = sandbox.issue_code(CLIENT_ID, redirect_uri, query["code_challenge"][0])
        return f"{redirect_uri}?code={code}&state={query['state'][0]}"

    with requests.Session() as session:
        terminal.connect(
            store, default_connection("eu"), client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
            token_url=sandbox.token_url, session=session, show=shown.append, paste=pasted,
            redirect_uri=redirect_uri, authorize_base=sandbox.authorize_url,
        )  # fmt: skip
        assert vault.value("snapchat-eu-refresh-token") == REFRESH_TOKEN
        shown.clear()
        with pytest.raises(AuthenticationError, match="did not exchange the code"):
            terminal.connect(
                store, default_connection("other"), client_id=CLIENT_ID,
                client_secret="wrong-secret-value", token_url=sandbox.token_url,
                session=session, show=shown.append, paste=pasted, redirect_uri=redirect_uri,
                authorize_base=sandbox.authorize_url,
            )  # fmt: skip
    assert vault.value("snapchat-other-refresh-token") is None


def test_the_code_is_bound_to_the_flow_with_pkce(sandbox: SnapchatSandbox) -> None:
    """The authorize URL carries an S256 challenge; a code issued for it is exchanged only
    with its verifier (a stolen code injected into another flow is refused)."""
    verifier, challenge = terminal.pkce_pair()
    url = terminal.authorize_url(sandbox.authorize_url, CLIENT_ID, "https://example.invalid/cb",
                                "some-state", challenge)  # fmt: skip
    query = parse_qs(urlparse(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"] == [challenge]
    with requests.Session() as session:
        answer = session.get(url, allow_redirects=False, timeout=10)
        assert answer.status_code == 302
        code = parse_qs(urlparse(answer.headers["Location"]).query)["code"][0]
        with pytest.raises(AuthenticationError, match="did not exchange"):
            terminal.exchange_code(session, sandbox.token_url, client_id=CLIENT_ID,
                                  client_secret=CLIENT_SECRET, code=code,
                                  redirect_uri="https://example.invalid/cb",
                                  verifier=terminal.pkce_pair()[0])  # another flow's  # fmt: skip
        plain = session.get(url.replace("S256", "plain"), allow_redirects=False, timeout=10)
        assert plain.status_code == 400  # only S256
        code = parse_qs(urlparse(session.get(url, allow_redirects=False, timeout=10)
                                 .headers["Location"]).query)["code"][0]  # fmt: skip
        refresh = terminal.exchange_code(session, sandbox.token_url, client_id=CLIENT_ID,
                                        client_secret=CLIENT_SECRET, code=code,
                                        redirect_uri="https://example.invalid/cb",
                                        verifier=verifier)  # fmt: skip
    assert refresh == REFRESH_TOKEN


def test_a_pasted_url_that_is_not_the_registered_redirect_is_refused(
    sandbox: SnapchatSandbox, vault: KeyVaultFake
) -> None:
    store = KeyVaultSecrets(secret_client(vault, retry_total=0))
    redirect_uri = "https://example.invalid/callback"
    shown: list[str] = []

    def pasted() -> str:  # a real code and state, but sent to another address
        query = parse_qs(urlparse(shown[0]).query)
        code = sandbox.issue_code(CLIENT_ID, redirect_uri, query["code_challenge"][0])
        return f"https://attacker.invalid/callback?code={code}&state={query['state'][0]}"

    with requests.Session() as session, pytest.raises(AuthenticationError, match="registered"):
        terminal.connect(
            store, default_connection("main"), client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
            token_url=sandbox.token_url, session=session, show=shown.append, paste=pasted,
            redirect_uri=redirect_uri, authorize_base=sandbox.authorize_url,
        )  # fmt: skip
    assert vault.value("snapchat-main-refresh-token") is None


@pytest.mark.parametrize("grant", ["refresh_token", "authorization_code"])
def test_a_token_post_never_follows_a_redirect(sandbox: SnapchatSandbox, grant: str) -> None:
    """requests re-sends the body (the client secret, a refresh token) on a 307 or 308."""
    sandbox.inject("307:location=/elsewhere/token", path_contains="/access_token")
    with requests.Session() as session:
        client = SnapchatClient(
            session, api_url=sandbox.api_url, token_url=sandbox.token_url,
            credentials=Credentials(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN),
            policy=RetryPolicy(attempts=2, max_seconds=5, timeout=10),
        )  # fmt: skip
        exchange = functools.partial(
            terminal.exchange_code, session, sandbox.token_url, client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET, code="any", redirect_uri="https://example.invalid/cb",
            verifier=terminal.pkce_pair()[0],
        )  # fmt: skip
        post = exchange if grant == "authorization_code" else lambda: client.get_segment(AUDIENCE)
        with pytest.raises(RedirectRefused, match="not followed"):
            post()
    assert [r for r in sandbox.requests() if r.path.startswith("/elsewhere")] == []
    assert sandbox.requests()[-1].status == 307
