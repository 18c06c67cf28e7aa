"""One export entry of a definitions document, field by field: each problem is named by the
export and the field it concerns, and every problem is reported at once.
"""

from __future__ import annotations

import re
from typing import Any

from shared.core.definition_types import (
    ADD_MODE_RETENTION_DAYS,
    AUDIENCE_ID,
    CONTAINER,
    COUNTRY,
    LIFETIME,
    LOOKALIKE_TYPES,
    MAX_SOURCES,
    MODES,
    NAME,
    Export,
    Lookalike,
    Mode,
    NewAudience,
    Source,
)
from shared.core.identifiers import IdentifierType
from shared.core.safeguard import (
    DEFAULT_ALWAYS_ALLOWED_REMOVALS,
    DEFAULT_MAX_REMOVAL_PERCENT,
    Limits,
)


def parse_export(
    item: object, where: str, connections: set[str], problems: list[str], place: str = ""
) -> Export | None:
    if not isinstance(item, dict):
        problems.append(f"{where}: expected an object")
        return None
    name = name_field(item, where, problems)
    if name:
        where = f"export {name!r} ({place})" if place else f"export {name!r}"
    unknown_fields(item, _EXPORT_FIELDS, where, problems)
    sources = _parse_sources(item, where, problems)
    container, path = (sources[0].container, sources[0].path) if sources else ("", "")
    audience_id, new_audience = _parse_audience(item, where, problems,
                                                mirror=item.get("mode") == "mirror")  # fmt: skip
    connection = text_field(item, "connection", where, problems)
    if connection and connection not in connections:
        problems.append(f"{where}: connection: {connection!r} is not a declared, valid connection")
    columns = _parse_columns(item.get("columns"), where, problems)
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(f"{where}: enabled: expected true or false")
    mode = item.get("mode", Mode.ADD)
    if mode not in MODES:
        problems.append(f"{where}: mode: expected one of {', '.join(MODES)}")
    country = item.get("default_country_code")
    if country is not None and not (
        isinstance(country, str) and country.isdigit() and 1 <= len(country) <= 3
    ):
        problems.append(f'{where}: default_country_code: expected 1 to 3 digits, e.g. "44"')
    limits = _parse_limits(item, where, problems)
    lookalike = _parse_lookalike(item.get("lookalike"), where, problems)
    if enabled is not False and item.get("data_transfer_acknowledged") is not True:
        problems.append(
            f"{where}: data_transfer_acknowledged: must be true. Exporting sends hashed "
            "personal data out of your compliance boundary to Snapchat; set it once your "
            "organisation has approved that transfer for this segment"
        )
    if problems:
        return None
    return Export(
        name=name,
        container=container,
        path=path,
        audience_id=audience_id,
        connection=connection,
        columns=columns,
        enabled=bool(enabled),
        mode=Mode(mode),
        default_country_code=country,
        new_audience=new_audience,
        removal_limits=limits,
        more_sources=tuple(sources[1:]),
        lookalike=lookalike,
    )


def _parse_limits(item: dict[str, Any], where: str, problems: list[str]) -> Limits:
    percent = item.get("max_removal_percent", DEFAULT_MAX_REMOVAL_PERCENT)
    if not _is_number(percent) or not 0 <= percent <= 100:
        problems.append(f"{where}: max_removal_percent: expected a number from 0 to 100")
        percent = DEFAULT_MAX_REMOVAL_PERCENT
    floor = item.get("always_allowed_removals", DEFAULT_ALWAYS_ALLOWED_REMOVALS)
    if not _is_number(floor) or isinstance(floor, float) or floor < 0:
        problems.append(f"{where}: always_allowed_removals: expected a whole number, 0 or more")
        floor = DEFAULT_ALWAYS_ALLOWED_REMOVALS
    return Limits(max_removal_percent=float(percent), always_allowed_removals=int(floor))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_EXPORT_FIELDS = {
    "name", "description", "source", "sources", "audience_id", "audience", "connection", "columns",
    "enabled", "mode", "default_country_code", "data_transfer_acknowledged",
    "max_removal_percent", "always_allowed_removals", "lookalike",
}  # fmt: skip
MAX_LOOKALIKE_COUNTRIES = 50


def _parse_lookalike(raw: object, where: str, problems: list[str]) -> Lookalike | None:
    """``lookalike``: type, countries and name of a lookalike audience to create."""
    if raw is None:
        return None
    where = f"{where}: lookalike"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object with type, countries and name")
        return None
    unknown_fields(raw, {"type", "countries", "name"}, where, problems)
    kind = raw.get("type", "BALANCE")
    if kind not in LOOKALIKE_TYPES:
        problems.append(f"{where}: type: expected one of {', '.join(LOOKALIKE_TYPES)}")
    name = text_field(raw, "name", where, problems)
    if len(name) > 375:
        problems.append(f"{where}: name: at most 375 characters")
    countries = raw.get("countries")
    if (
        not isinstance(countries, list)
        or not 1 <= len(countries) <= MAX_LOOKALIKE_COUNTRIES
        or not all(isinstance(c, str) and COUNTRY.fullmatch(c) for c in countries)
    ):
        problems.append(
            f"{where}: countries: expected a list of 1 to {MAX_LOOKALIKE_COUNTRIES} two-letter "
            'country codes (ISO 3166-1 alpha-2, upper case), e.g. ["US", "GB"]'
        )
        return None
    if len(set(countries)) != len(countries):
        problems.append(f"{where}: countries: a country is listed twice")
    return Lookalike(str(kind), tuple(countries), name)


def _parse_audience(
    item: dict[str, Any], where: str, problems: list[str], *, mirror: bool
) -> tuple[str, NewAudience | None]:
    """Either ``audience_id`` (an existing audience) or ``audience`` (one to create)."""
    if ("audience_id" in item) == ("audience" in item):
        problems.append(
            f"{where}: audience_id: give either audience_id (an existing audience) or "
            "audience (ad_account_id and name of one the app creates)"
        )
        return "", None
    if "audience_id" in item:
        return text_field(item, "audience_id", where, problems, AUDIENCE_ID), None
    raw = item["audience"]
    where = f"{where}: audience"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object with ad_account_id and name")
        return "", None
    unknown_fields(
        raw, {"ad_account_id", "name", "retention_in_days", "description"}, where, problems
    )
    account = text_field(raw, "ad_account_id", where, problems, AUDIENCE_ID)
    name = text_field(raw, "name", where, problems)
    if len(name) > 375:
        problems.append(f"{where}: name: at most 375 characters")
    # Add mode never removes anyone: a finite retention is what lets the people who left the
    # segment age out of the audience (each run adds everyone still in it again). Mirror
    # mode removes them itself and sends only changes, so its audiences keep members.
    retention = raw.get("retention_in_days", LIFETIME if mirror else ADD_MODE_RETENTION_DAYS)
    if not isinstance(retention, int) or isinstance(retention, bool) or not 1 <= retention <= 9999:
        problems.append(f"{where}: retention_in_days: expected 1 to 9999 (9999: lifetime)")
        retention = 9999
    description = raw.get("description", "")
    if not isinstance(description, str):
        problems.append(f"{where}: description: expected a string")
        description = ""
    return "", NewAudience(account, name, retention, description)


def _parse_sources(item: dict[str, Any], where: str, problems: list[str]) -> list[Source]:
    """``sources`` (one or more segments) or ``source`` (the shorthand for one)."""
    if ("source" in item) == ("sources" in item):
        problems.append(
            f"{where}: source: give either source (one segment: container and path) or "
            "sources (a list of them)"
        )
        return []
    if "source" in item:
        container, path = _parse_source(item["source"], f"{where}: source", problems)
        return [Source(container, path)]
    raw = item["sources"]
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_SOURCES:
        problems.append(f"{where}: sources: expected a list of 1 to {MAX_SOURCES} segments")
        return []
    found = [
        Source(*_parse_source(entry, f"{where}: sources[{index}]", problems))
        for index, entry in enumerate(raw)
    ]
    for index, source in enumerate(found):
        if source.path and source in found[:index]:
            problems.append(f"{where}: sources[{index}]: {source.label} is listed twice")
    return found


def _parse_source(raw: object, where: str, problems: list[str]) -> tuple[str, str]:
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object with container and path")
        return "", ""
    unknown_fields(raw, {"container", "path"}, where, problems)
    container = text_field(raw, "container", where, problems, CONTAINER)
    path = text_field(raw, "path", where, problems).strip("/")
    parts = path.split("/")
    if path and any(part in ("", ".", "..") for part in parts):
        problems.append(f"{where}: path: empty, '.' and '..' segments are not allowed")
    return container, path


def _parse_columns(
    raw: object, where: str, problems: list[str]
) -> tuple[tuple[IdentifierType, str], ...]:
    where = f"{where}: columns"
    keys = [kind.column_key for kind in IdentifierType]
    if isinstance(raw, dict):
        unknown_fields(raw, set(keys), where, problems)
    if not isinstance(raw, dict) or not any(key in raw for key in keys):
        problems.append(f"{where}: expected an object naming at least one of {', '.join(keys)}")
        return ()
    return tuple(
        (kind, text_field(raw, kind.column_key, where, problems))
        for kind in IdentifierType
        if kind.column_key in raw
    )


def name_field(item: dict[str, Any], where: str, problems: list[str]) -> str:
    name = text_field(item, "name", where, problems)
    if name and not NAME.fullmatch(name):
        problems.append(
            f"{where}: name: {name!r} must be 1-63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit (it is used in URLs)"
        )
        return ""
    return name


def text_field(
    item: dict[str, Any],
    key: str,
    where: str,
    problems: list[str],
    pattern: re.Pattern[str] | None = None,
) -> str:
    value = item.get(key)
    if value is None:
        problems.append(f"{where}: {key}: required")
        return ""
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: {key}: expected a non-empty string")
        return ""
    if pattern is not None and not pattern.fullmatch(value):
        problems.append(f"{where}: {key}: {value!r} is not a valid value")
        return ""
    return value


def unknown_fields(item: dict[str, Any], known: set[str], where: str, problems: list[str]) -> None:
    for key in sorted(set(item) - known):
        problems.append(
            f"{where}: {key}: unknown field (expected one of {', '.join(sorted(known))})"
        )
