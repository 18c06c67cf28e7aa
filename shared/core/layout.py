"""How Customer Insights lays a segment export out in Blob Storage, as pure functions.

Two layouts occur under a segment's ``path`` (see docs/how-it-works.md, *Reading an export*):

- snapshot folders: ``<path>/<yyyy>/<MM>/<dd>/<HHmm>/<Table>_<n>.csv``, one folder per export
  run, large tables split into numbered partitions; ``model.json`` one level above ``<path>``;
- flat files: ``<path>_<unix epoch seconds>.csv``, one file per export run.

``newest_snapshot`` picks the latest complete snapshot from a blob listing; ``read_model``
extracts the entity's columns and CSV settings from ``model.json``.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlparse

from shared.core.errors import SourceMalformed

MODEL_FILE = "model.json"


@dataclass(frozen=True)
class BlobEntry:
    name: str
    last_modified: datetime
    size: int


@dataclass(frozen=True)
class Snapshot:
    """One export run's complete output for a segment."""

    id: str  # "2020/08/24/1433" for a snapshot folder, "epoch-1598279580" for a flat file
    taken_at: datetime
    partitions: tuple[str, ...]  # blob names, in partition order
    last_modified: datetime  # newest last-modified time among its files
    folder: str | None  # the snapshot folder, None for a flat file
    version: str = ""  # changes when any of its files is rewritten
    size: int = 0  # bytes, over all its files


@dataclass(frozen=True)
class CsvFormat:
    header: bool
    delimiter: str = ","
    encoding: str = "utf-8"


@dataclass(frozen=True)
class Model:
    """What model.json says about one entity."""

    columns: tuple[str, ...]
    csv: CsvFormat
    partitions: tuple[str, ...]  # blob names of the partitions it lists


def model_blob_name(path: str) -> str:
    """model.json sits in the export folder, the parent of the segment's folder."""
    return posixpath.join(posixpath.dirname(path), MODEL_FILE)


def snapshots(path: str, blobs: Iterable[BlobEntry]) -> list[Snapshot]:
    """Every snapshot found under ``path``, oldest first."""
    table = re.escape(posixpath.basename(path))
    folder_file = re.compile(
        re.escape(path) + rf"/(\d{{4}}/\d{{2}}/\d{{2}}/\d{{4}})/{table}_(\d+)\.csv"
    )
    flat_file = re.compile(re.escape(path) + r"_(\d{1,12})\.csv")
    folders: dict[str, list[tuple[int, BlobEntry]]] = {}
    found: list[Snapshot] = []
    for blob in blobs:
        if match := folder_file.fullmatch(blob.name):
            folders.setdefault(match[1], []).append((int(match[2]), blob))
        elif match := flat_file.fullmatch(blob.name):
            found.append(
                Snapshot(
                    id=f"epoch-{int(match[1])}",
                    taken_at=datetime.fromtimestamp(int(match[1]), UTC),
                    partitions=(blob.name,),
                    last_modified=blob.last_modified,
                    folder=None,
                    version=_version([blob]),
                    size=blob.size,
                )
            )
    for snapshot_id, parts in folders.items():
        try:
            taken_at = datetime.strptime(snapshot_id, "%Y/%m/%d/%H%M").replace(tzinfo=UTC)
        except ValueError:
            continue  # digits that are not a date: not a Customer Insights folder
        parts.sort(key=lambda part: part[0])
        found.append(
            Snapshot(
                id=snapshot_id,
                taken_at=taken_at,
                partitions=tuple(blob.name for _, blob in parts),
                last_modified=max(blob.last_modified for _, blob in parts),
                folder=f"{path}/{snapshot_id}",
                version=_version([blob for _, blob in parts]),
                size=sum(blob.size for _, blob in parts),
            )
        )
    found.sort(key=lambda snapshot: (snapshot.taken_at, snapshot.id))
    return found


def _version(blobs: list[BlobEntry]) -> str:
    """A short fingerprint of a snapshot's files: names, sizes and modification times."""
    digest = hashlib.sha256()
    for blob in blobs:
        digest.update(f"{blob.name}|{blob.size}|{blob.last_modified.isoformat()}\n".encode())
    return digest.hexdigest()[:16]


def read_model(document: bytes, *, entity: str, container: str, where: str) -> Model:
    """Parse model.json (CDM) for ``entity``; ``where`` names the blob in error messages."""
    try:
        root = json.loads(document.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceMalformed(f"{where}: not valid JSON ({type(exc).__name__})") from None
    entities = root.get("entities") if isinstance(root, dict) else None
    if not isinstance(entities, list):
        raise SourceMalformed(f"{where}: no 'entities' list")
    match = next(
        (e for e in entities if isinstance(e, dict) and e.get("name") == entity),
        None,
    )
    if match is None:
        raise SourceMalformed(f"{where}: lists no entity named {entity!r}")
    attributes = match.get("attributes")
    if not isinstance(attributes, list) or not attributes:
        raise SourceMalformed(f"{where}: entity {entity!r} has no attributes")
    columns = tuple(str(a.get("name", "")) if isinstance(a, dict) else "" for a in attributes)
    if not all(columns):
        raise SourceMalformed(f"{where}: entity {entity!r} has an attribute without a name")
    raw_partitions = match.get("partitions") or []
    if not isinstance(raw_partitions, list):
        raise SourceMalformed(f"{where}: entity {entity!r}: 'partitions' is not a list")
    partitions = []
    csv_format = CsvFormat(header=False)
    for index, partition in enumerate(raw_partitions):
        if not isinstance(partition, dict) or not isinstance(partition.get("location"), str):
            raise SourceMalformed(f"{where}: entity {entity!r}: partition {index} has no location")
        partitions.append(blob_name_from_location(partition["location"], container, where))
        if index == 0:
            csv_format = _csv_format(partition.get("fileFormatSettings"), entity, where)
    return Model(columns=columns, csv=csv_format, partitions=tuple(partitions))


def _csv_format(settings: Any, entity: str, where: str) -> CsvFormat:
    if settings is None:
        return CsvFormat(header=False)
    if not isinstance(settings, dict):
        raise SourceMalformed(f"{where}: entity {entity!r}: fileFormatSettings is not an object")
    header = settings.get("columnHeaders", False)
    delimiter = settings.get("delimiter", ",")
    encoding = str(settings.get("encoding", "UTF-8")).lower().replace("_", "-")
    if not isinstance(header, bool):
        raise SourceMalformed(f"{where}: entity {entity!r}: columnHeaders is not true or false")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise SourceMalformed(f"{where}: entity {entity!r}: delimiter must be one character")
    if encoding not in ("utf-8", "utf8"):
        raise SourceMalformed(f"{where}: entity {entity!r}: encoding {encoding!r} is not supported")
    return CsvFormat(header=header, delimiter=delimiter)


def blob_name_from_location(location: str, container: str, where: str) -> str:
    """Map a partition's absolute URI (blob, dfs or emulator style) to a blob name."""
    parts = unquote(urlparse(location).path).lstrip("/").split("/")
    for skip in (0, 1):  # emulators put the account name before the container
        if len(parts) > skip + 1 and parts[skip] == container:
            return "/".join(parts[skip + 1 :])
    shown = urlparse(location)._replace(query="", fragment="").geturl()  # no SAS token
    raise SourceMalformed(f"{where}: partition location {shown} is not in container {container!r}")
