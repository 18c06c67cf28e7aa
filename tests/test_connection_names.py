"""A connection's ``allowed`` people and groups carry the names the admin chose (no Microsoft
Graph); a connection that exports use is not deleted, and the refusal lists them."""

from __future__ import annotations

import json
from typing import Any

import function_app
from shared.core.access import Principal, Role
from tests.conftest import FastApp, local_request

ANA = "6f1c2b3a-4d5e-6f70-8192-a3b4c5d6e7f8"
TEAM = "7a2d3c4b-5e6f-4081-92a3-b4c5d6e7f809"
BOB = "8b3e4d5c-6f70-4192-a3b4-c5d6e7f8091a"


def call(handler: Any, method: str, name: str, body: object = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:  # fmt: skip
    raw = json.dumps(body).encode() if body is not None else b""
    request = local_request(method, f"http://127.0.0.1:7071/api/connections/{name}",
                            body=raw, headers=headers, route_params={"name": name})  # fmt: skip
    response = handler(request)
    return response.status_code, json.loads(response.get_body()), dict(response.headers)


def test_allowed_people_are_answered_with_the_names_the_admin_chose(fast_app: FastApp) -> None:
    allowed = [{"id": ANA.upper(), "name": "Ana Marketing"}, TEAM, {"id": BOB}]
    status, body, _ = call(function_app.put_connection, "PUT", "brand-x",
                           {"display_name": "Brand X", "allowed": allowed})  # fmt: skip
    assert status == 201, body
    status, got, _ = call(function_app.get_connection, "GET", "brand-x")
    assert status == 200
    assert got["definition"]["allowed"] == [
        {"id": ANA, "name": "Ana Marketing"}, {"id": TEAM, "name": ""}, {"id": BOB, "name": ""},
    ]  # fmt: skip
    listed = call(function_app.list_connections, "GET", "")[1]["connections"]
    assert [c["definition"]["allowed"] for c in listed if c["name"] == "brand-x"] == [
        got["definition"]["allowed"]
    ]
    # What GET answered, PUT back as it is, is accepted: the console round-trips it.
    status, again, _ = call(function_app.put_connection, "PUT", "brand-x", got["definition"],
                            {"If-Match": got["etag"]})  # fmt: skip
    assert status == 200, again
    # Access still goes by the ID alone: the name decides nothing.
    connection = fast_app.runtime.definitions.require_connection("brand-x")
    assert Principal(ANA, "someone else entirely", frozenset({Role.OPERATOR})).may_use(connection)
    assert not Principal(BOB[:-1] + "b", "Ana Marketing", frozenset({Role.OPERATOR})).may_use(
        connection
    )


def test_a_name_is_a_display_name_not_an_address_or_anything_else(fast_app: FastApp) -> None:
    for wrong, says in (
        ({"id": ANA, "name": "ana@contoso.com"}, "not an email address"),
        ({"id": ANA, "name": "x" * 257}, "at most 256 characters"),
        ({"id": ANA, "name": 7}, "a display name"),
        ({"id": "ana", "name": "Ana"}, "expected an Entra object ID"),
        ({"id": ANA, "mail": "Ana"}, "expected only id and name"),
    ):
        status, body, _ = call(function_app.put_connection, "PUT", "brand-y", {"allowed": [wrong]})
        assert status == 400, wrong
        assert any(says in p for p in body["problems"]), (wrong, body["problems"])
        assert "ana@contoso.com" not in json.dumps(body)


def test_deleting_a_connection_in_use_lists_the_exports_that_use_it(fast_app: FastApp) -> None:
    status, got, _ = call(function_app.get_connection, "GET", "main")
    status, body, _ = call(function_app.delete_connection, "DELETE", "main",
                           headers={"If-Match": got["etag"]})  # fmt: skip
    assert status == 409
    assert body["error"] == "in_use"
    assert body["exports"] == ["high-value"]
