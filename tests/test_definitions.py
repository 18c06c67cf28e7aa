"""Export definitions: a valid document loads, every problem is named with export and field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from shared.core import definitions
from shared.core.errors import ConfigurationError
from shared.core.settings import APP_ROOT

VALID: dict[str, Any] = {
    "connections": [{"name": "main"}, {"name": "eu"}],
    "exports": [
        {
            "name": "high-value",
            "source": {"container": "customer-insights", "path": "CI_1/BlobExport/HighValue/"},
            "audience_id": "aud-1",
            "connection": "main",
            "columns": {"email": "EMail"},
            "data_transfer_acknowledged": True,
        },
        {
            "name": "lapsed",
            "source": {"container": "customer-insights", "path": "CI_1/BlobExport/Lapsed"},
            "audience_id": "aud-2",
            "connection": "eu",
            "columns": {"email": "PrimaryEmail"},
            "enabled": False,
            "data_transfer_acknowledged": True,
        },
    ],
}


def problems(document: Any) -> list[str]:
    try:
        return definitions.parse(document).problems
    except ConfigurationError as exc:
        return exc.problems


def test_a_valid_document_loads_with_defaults() -> None:
    loaded = definitions.parse(VALID)
    first, second = loaded.exports
    assert (first.name, first.container, first.path) == (
        "high-value",
        "customer-insights",
        "CI_1/BlobExport/HighValue",
    )
    assert first.table_name == "HighValue"
    assert first.enabled is True
    assert second.enabled is False
    assert second.email_column == "PrimaryEmail"
    main = loaded.connection("main")
    assert main.client_id_secret == "snapchat-main-client-id"
    assert main.refresh_token_secret == "snapchat-main-refresh-token"
    assert loaded.connection("eu").refresh_token_secret == "snapchat-eu-refresh-token"


def test_the_shipped_example_definitions_are_valid() -> None:
    loaded = definitions.load(APP_ROOT / "exports.json")
    assert loaded.exports


def mutate(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(VALID)
    change(document)
    return document


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["exports"][1].update(name="high-value"),
         "export 'high-value' (exports[1]): name: used by exports[0], exports[1]; names must be unique"),
        (lambda d: d["exports"][0]["columns"].update(emial="Mail"),
         "export 'high-value': columns: emial: unknown field (expected one of email, mobile_ad_id, phone)"),
        (lambda d: d["exports"][0].update(columns={"emial": "Mail"}),
         "export 'high-value': columns: emial: unknown field"),
        (lambda d: d["exports"][0].pop("audience_id"), "export 'high-value': audience_id: give either"),
        (lambda d: d["exports"][0]["columns"].pop("email"),
         "export 'high-value': columns: expected an object naming at least one of email, phone"),
        (lambda d: d["exports"][0].pop("data_transfer_acknowledged"),
         "export 'high-value': data_transfer_acknowledged: must be true. Exporting sends hashed"),
        (lambda d: d["exports"][0].update(mode="sync"), "export 'high-value': mode: expected one of add, mirror"),
        (lambda d: d["exports"][0].update(default_country_code="+44"),
         "export 'high-value': default_country_code: expected 1 to 3 digits"),
        (lambda d: d["exports"][0].update(audience={"ad_account_id": "a", "name": "n"}),
         "export 'high-value': audience_id: give either"),
        (lambda d: d["exports"][0].pop("columns"), "export 'high-value': columns: expected an object"),
        (lambda d: d["exports"][0].update(name="High Value"), "exports[0]: name: 'High Value' must be"),
        (lambda d: d["exports"][0].update(connection="nope"),
         "export 'high-value': connection: 'nope' is not a declared, valid connection"),
        (lambda d: d["exports"][0]["source"].update(path="CI/../secret"),
         "export 'high-value': source: path: empty, '.' and '..'"),
        (lambda d: d["exports"][0]["source"].update(container="Bad_Name"),
         "export 'high-value': source: container: 'Bad_Name' is not a valid value"),
        (lambda d: d["exports"][0].update(enabled="yes"), "export 'high-value': enabled: expected"),
        (lambda d: d["exports"][0].update(colums={}), "export 'high-value': colums: unknown field"),
        (lambda d: d["connections"].append({"name": "main"}), "connection 'main': name: declared twice"),
        (lambda d: d.pop("connections"), "connections: expected a non-empty list"),
    ],
)  # fmt: skip
def test_each_problem_names_the_export_and_field(change: Any, expected: str) -> None:
    found = problems(mutate(change))
    assert any(p.startswith(expected) for p in found), found


def test_a_broken_export_is_set_aside_and_the_others_still_load() -> None:
    document = mutate(lambda d: d["exports"][0].pop("audience_id"))
    loaded = definitions.parse(document)
    assert [e.name for e in loaded.exports] == ["lapsed"]
    assert loaded.broken_export("high-value") is not None
    assert loaded.export("high-value") is None


def test_duplicate_names_set_both_entries_aside() -> None:
    loaded = definitions.parse(mutate(lambda d: d["exports"][1].update(name="high-value")))
    assert loaded.exports == ()
    assert [b.name for b in loaded.broken] == ["high-value", "high-value"]


def test_all_problems_are_reported_at_once() -> None:
    def break_both(document: dict[str, Any]) -> None:
        document["exports"][0].pop("audience_id")
        document["exports"][1]["columns"] = {}

    found = problems(mutate(break_both))
    assert len(found) == 2


def test_a_file_that_is_not_json_says_where(tmp_path: Path) -> None:
    path = tmp_path / "exports.json"
    path.write_text('{"connections": [}')
    with pytest.raises(ConfigurationError, match=r"exports.json is not valid JSON \(line 1"):
        definitions.load(path)


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no file at"):
        definitions.load(tmp_path / "absent.json")


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "exports.json"
    path.write_text(json.dumps(VALID))
    assert definitions.load(path) == definitions.parse(VALID)


def test_duplicate_names_are_reported_even_when_the_entries_have_other_problems() -> None:
    def clash(document: dict[str, Any]) -> None:
        document["exports"][1].update(name="high-value", mode="sync")
        document["exports"][0].pop("audience_id")

    found = problems(mutate(clash))
    assert (
        "export 'high-value' (exports[0]): name: used by exports[0], exports[1]; names must be unique"
        in found
    )
    assert (
        "export 'high-value' (exports[1]): name: used by exports[0], exports[1]; names must be unique"
        in found
    )
    # every line of a shared name says which entry it is about, so no two lines are the same
    assert any(p.startswith("export 'high-value' (exports[1]): mode:") for p in found)
    assert any(p.startswith("export 'high-value' (exports[0]): audience_id:") for p in found)
    assert len(found) == len(set(found)) == 4
