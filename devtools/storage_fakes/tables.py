"""A fake ``TableClient``: entities with ETags, conditions, transactions, the adapters' filters."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableEntity, TableTransactionError, UpdateMode

from devtools.storage_fakes.service import Strict, new_etag, refused

if TYPE_CHECKING:
    from devtools.storage_fakes import FakeStorage


@dataclass
class TableData:
    rows: dict[tuple[str, str], tuple[dict[str, Any], str, datetime]] = field(default_factory=dict)


def _stored(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The properties as the service keeps them (None dropped, enums as their text)."""
    kept: dict[str, Any] = {}
    for name, value in entity.items():
        if value is None:
            continue
        kept[name] = str(value.value) if isinstance(value, enum.Enum) else value
        if not isinstance(kept[name], str | bool | int | float | bytes):
            raise NotImplementedError(f"property {name}: {type(value).__name__} values")
        if type(value) is int and not -(2**31) <= value < 2**31:
            raise TypeError(f"{value} is too large to be cast to type EdmType.INT32.")
    if not isinstance(kept.get("PartitionKey"), str) or not isinstance(kept.get("RowKey"), str):
        raise TypeError("PartitionKey and RowKey must be strings")
    return kept


def _entity(values: dict[str, Any], etag: str, at: datetime) -> TableEntity:
    """An entity as the SDK hands it back."""
    entity = TableEntity(values)
    entity._metadata = {"etag": etag, "timestamp": at}  # as the SDK sets it
    return entity


def _condition(etag: str | None, match: MatchConditions) -> str | None:
    """The ETag a write requires (None: any), checked as the SDK checks its arguments."""
    if match == MatchConditions.IfNotModified:
        if not etag:
            raise ValueError("IfNotModified must be specified with etag.")
        return etag
    if match == MatchConditions.Unconditionally:
        if etag:
            raise ValueError("Etag is not supported for an Unconditional operation.")
        return None
    raise NotImplementedError(f"match condition {match}")


class FakeTable(Strict):
    """The ``TableClient`` surface the adapters use, on one table of a ``FakeStorage``."""

    def __init__(self, storage: FakeStorage, name: str) -> None:
        self.table_name = name
        self._storage, self._lock = storage, storage.lock

    def _data(self) -> TableData:
        data = self._storage.tables.get(self.table_name)
        if data is None:
            raise refused(ResourceNotFoundError, 404, "TableNotFound")
        return data

    def create_table(self) -> None:
        with self._lock:
            if self.table_name in self._storage.tables:
                raise refused(ResourceExistsError, 409, "TableAlreadyExists")
            self._storage.tables[self.table_name] = TableData()

    def create_entity(self, entity: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._apply(self._data(), "create", entity, {})

    def update_entity(self, entity: Mapping[str, Any], mode: UpdateMode = UpdateMode.MERGE,
                      **options: Any) -> dict[str, Any]:  # fmt: skip
        with self._lock:
            return self._apply(self._data(), "update", entity, {"mode": mode, **options})

    def upsert_entity(self, entity: Mapping[str, Any], mode: UpdateMode = UpdateMode.MERGE,
                      **options: Any) -> dict[str, Any]:  # fmt: skip
        with self._lock:
            return self._apply(self._data(), "upsert", entity, {"mode": mode, **options})

    def delete_entity(self, partition_key: str, row_key: str, **options: Any) -> None:
        """As the SDK: deleting an entity that is not there is no error."""
        with self._lock:
            key = {"PartitionKey": partition_key, "RowKey": row_key}
            try:
                self._apply(self._data(), "delete", key, options)
            except ResourceNotFoundError:
                return

    def get_entity(self, partition_key: str, row_key: str) -> TableEntity:
        with self._lock:
            found = self._data().rows.get((partition_key, row_key))
            if found is None:
                raise refused(ResourceNotFoundError, 404, "ResourceNotFound")
            return _entity(*found)

    def query_entities(self, query_filter: str, *, parameters: Mapping[str, Any] | None = None,
                       results_per_page: int | None = None) -> Iterator[TableEntity]:  # fmt: skip
        """The entities the filter matches, by partition and row key, read as they are
        iterated (as the SDK's pages); a filter of a shape the adapters do not send raises."""
        del results_per_page  # one page: the same entities
        matches = parse_filter(query_filter, dict(parameters or {}))
        return self._listed(matches)

    def list_entities(self) -> Iterator[TableEntity]:
        return self._listed(lambda values: True)

    def _listed(self, matches: Callable[[dict[str, Any]], bool]) -> Iterator[TableEntity]:
        with self._lock:
            data = self._storage.tables.get(self.table_name)
            found = None if data is None else [_entity(*data.rows[key]) for key in sorted(data.rows)
                                               if matches(data.rows[key][0])]  # fmt: skip
        if found is None:
            yield from ()
            raise refused(ResourceNotFoundError, 404, "TableNotFound")
        yield from found

    def submit_transaction(self, operations: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
        """All or nothing: the operations are applied to a copy, which replaces the table
        only if every one of them succeeded."""
        steps = [(str(op[0]), op[1], op[2] if len(op) > 2 else {}) for op in operations]
        if len({step[1]["PartitionKey"] for step in steps}) > 1:
            raise ValueError("Partition Keys must all be the same.")
        if len({(step[1]["PartitionKey"], step[1]["RowKey"]) for step in steps}) < len(steps):
            raise refused(TableTransactionError, 400, "InvalidDuplicateRow")
        with self._lock:
            data = self._data()
            trial = TableData(dict(data.rows))
            answers = []
            for index, (verb, entity, options) in enumerate(steps):
                try:
                    answers.append(self._apply(trial, verb, entity, dict(options)))
                except HttpResponseError as exc:
                    status, code = exc.status_code or 400, str(getattr(exc, "error_code", ""))
                    raise refused(TableTransactionError, status, code, index) from None
            data.rows = trial.rows
            return answers

    def _apply(self, data: TableData, verb: str, entity: Mapping[str, Any],
               options: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        """One write on ``data``: its answer's metadata, or the service's refusal."""
        key = (str(entity["PartitionKey"]), str(entity["RowKey"]))
        current = data.rows.get(key)
        mode = options.pop("mode", UpdateMode.MERGE)
        match = options.pop("match_condition", MatchConditions.Unconditionally)
        required = _condition(options.pop("etag", None), match)
        if options:
            raise NotImplementedError(f"{verb} options {sorted(options)}")
        if verb == "create" and current is not None:
            raise refused(ResourceExistsError, 409, "EntityAlreadyExists")
        if verb in ("update", "delete") and current is None:
            raise refused(ResourceNotFoundError, 404, "ResourceNotFound")
        if required is not None and current is not None and current[1] != required:
            raise refused(ResourceModifiedError, 412, "UpdateConditionNotSatisfied")
        if verb == "delete":
            del data.rows[key]
            return {}
        if verb not in ("create", "update", "upsert"):
            raise NotImplementedError(f"transaction verb {verb!r}")
        values = _stored(entity)
        if verb != "create" and mode == UpdateMode.MERGE and current is not None:
            values = {**current[0], **values}
        at = datetime.now(UTC)
        data.rows[key] = (values, new_etag(at), at)
        return {"date": at, "etag": data.rows[key][1], "version": "2019-02-02"}


_TOKEN = re.compile(r"\s*(?:(\()|(\))|'((?:[^']|'')*)'|@(\w+)|(\w+))")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
}  # fmt: skip


def parse_filter(text: str, parameters: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """A predicate for the OData filters the adapters send: comparisons of a property with a
    quoted text or an ``@parameter``, joined by ``and``/``or``, in parentheses or not. A
    comparison with a missing property, or with a value of another type, is false."""
    tokens: list[tuple[str, Any]] = []
    position = 0
    while position < len(text.rstrip()):
        found = _TOKEN.match(text, position)
        if found is None:
            raise NotImplementedError(f"filter {text!r}: not a shape the fake reads")
        opening, closing, quoted, parameter, word = found.groups()
        if parameter is not None and parameter not in parameters:
            raise ValueError(f"filter {text!r}: no parameter {parameter!r}")
        tokens.append(
            ("(", None) if opening else (")", None) if closing
            else ("value", quoted.replace("''", "'")) if quoted is not None
            else ("value", parameters[parameter]) if parameter is not None
            else ("word", word)
        )  # fmt: skip
        position = found.end()
    predicate, rest = _either(tokens, text)
    if rest:
        raise NotImplementedError(f"filter {text!r}: not a shape the fake reads")
    return predicate


_Predicate = Callable[[dict[str, Any]], bool]
_Tokens = list[tuple[str, Any]]


def _either(tokens: _Tokens, text: str) -> tuple[_Predicate, _Tokens]:
    left, tokens = _both(tokens, text)
    while tokens[:1] == [("word", "or")]:
        right, tokens = _both(tokens[1:], text)
        left = _any_of(left, right)
    return left, tokens


def _both(tokens: _Tokens, text: str) -> tuple[_Predicate, _Tokens]:
    left, tokens = _comparison(tokens, text)
    while tokens[:1] == [("word", "and")]:
        right, tokens = _comparison(tokens[1:], text)
        left = _all_of(left, right)
    return left, tokens


def _comparison(tokens: _Tokens, text: str) -> tuple[_Predicate, _Tokens]:
    if tokens[:1] == [("(", None)]:
        inner, rest = _either(tokens[1:], text)
        if rest[:1] != [(")", None)]:
            raise NotImplementedError(f"filter {text!r}: unbalanced parentheses")
        return inner, rest[1:]
    if len(tokens) < 3 or tokens[0][0] != "word" or tokens[1][0] != "word" \
            or tokens[1][1] not in _COMPARE or tokens[2][0] != "value":  # fmt: skip
        raise NotImplementedError(f"filter {text!r}: not a shape the fake reads")
    name, compare, value = tokens[0][1], _COMPARE[tokens[1][1]], tokens[2][1]

    def matches(values: dict[str, Any]) -> bool:
        have = values.get(name)
        return have is not None and _kind(have) == _kind(value) and compare(have, value)

    return matches, tokens[3:]


def _any_of(left: _Predicate, right: _Predicate) -> _Predicate:
    return lambda values: left(values) or right(values)


def _all_of(left: _Predicate, right: _Predicate) -> _Predicate:
    return lambda values: left(values) and right(values)


def _kind(value: object) -> str:
    return "bool" if isinstance(value, bool) else "number" if isinstance(value, int | float) \
        else type(value).__name__  # fmt: skip
