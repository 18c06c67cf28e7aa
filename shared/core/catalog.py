"""What a container's blob listing and its model.json files say about the segments Customer
Insights exported there: names, paths, layouts and attributes. Pure: metadata only, never a
row.

A segment is found in either layout that ``shared.core.layout`` reads:

- snapshot folders: ``<path>/<yyyy>/<MM>/<dd>/<HHmm>/<Table>_<n>.csv``, where the segment is
  ``<path>`` (its last part is ``<Table>``), its attributes in ``model.json`` beside it;
- flat files: ``<path>_<unix epoch seconds>.csv``, where the segment is ``<path>`` (no
  model.json: its attributes are not known without reading the file, so none are given).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from shared.core.layout import MODEL_FILE, BlobEntry, model_blob_name

_FOLDER_FILE = re.compile(
    r"(?P<path>(?:.+/)?(?P<table>[^/]+))/\d{4}/\d{2}/\d{2}/\d{4}/(?P=table)_\d+\.csv"
)
_FLAT_FILE = re.compile(r"(?P<path>.+)_\d{1,12}\.csv")


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str  # the CDM dataType (string, int64, double, dateTime …), "" when not said


@dataclass(frozen=True)
class FoundSegment:
    name: str  # the table (segment) name: the path's last part, or the flat file's
    path: str  # what an export's source.path holds
    layout: str  # "folders" or "flat"

    @property
    def model(self) -> str:
        """The model.json that describes it ("" for a flat file)."""
        return model_blob_name(self.path) if self.layout == "folders" else ""


def segments_in(blobs: Iterable[BlobEntry]) -> list[FoundSegment]:
    """Every segment the listing shows, by path (a path seen in both layouts is listed once
    per layout)."""
    found: dict[tuple[str, str], FoundSegment] = {}
    for blob in blobs:
        if match := _FOLDER_FILE.fullmatch(blob.name):
            key = (match["path"], "folders")
            found.setdefault(key, FoundSegment(match["table"], match["path"], "folders"))
        elif match := _FLAT_FILE.fullmatch(blob.name):
            name = posixpath.basename(match["path"])
            found.setdefault((match["path"], "flat"), FoundSegment(name, match["path"], "flat"))
    return sorted(found.values(), key=lambda s: (s.path, s.layout))


def model_files(segments: Iterable[FoundSegment]) -> list[str]:
    """The model.json files that describe ``segments``, each once, in order."""
    return sorted({s.model for s in segments if s.model.endswith(MODEL_FILE)})


def model_attributes(document: bytes) -> dict[str, tuple[Attribute, ...]]:
    """Each entity's attributes in a model.json document (CDM), by entity name; an entity
    or attribute that is not as the format says is left out, and a document that is not
    JSON gives none (discovery shows what it can; the run names any fault)."""
    try:
        root = json.loads(document.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    entities = root.get("entities") if isinstance(root, dict) else None
    found: dict[str, tuple[Attribute, ...]] = {}
    for entity in entities if isinstance(entities, list) else []:
        if not isinstance(entity, dict) or not isinstance(entity.get("name"), str):
            continue
        attributes = entity.get("attributes")
        found[entity["name"]] = tuple(
            Attribute(str(a["name"]), str(a.get("dataType") or ""))
            for a in (attributes if isinstance(attributes, list) else [])
            if isinstance(a, dict) and isinstance(a.get("name"), str) and a["name"]
        )
    return found
