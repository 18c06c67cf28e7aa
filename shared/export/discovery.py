"""Which segments Customer Insights exported into a container: read from the blob listing and
model.json only (never a row), bounded in listing size and time.

Bounds: at most ``MAX_BLOBS`` blobs are listed, for at most ``MAX_SECONDS``; at most
``MAX_MODELS`` model.json files are read and ``MAX_SEGMENTS`` segments answered. Beyond any
of them the answer says ``truncated`` (what it lists is still right; it is not all).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from shared.adapters.blobsource import BlobSource
from shared.core.catalog import Attribute, FoundSegment, model_attributes, model_files, segments_in
from shared.core.errors import SourceMalformed
from shared.core.layout import BlobEntry, Snapshot, snapshots

MAX_BLOBS = 20_000
MAX_SECONDS = 10.0
MAX_MODELS = 20
MAX_SEGMENTS = 200


def discover(
    source: BlobSource, container: str, settled: Callable[[Snapshot], bool]
) -> dict[str, Any]:
    """``GET /api/segments``' answer for ``container`` (see docs/http-api.md)."""
    listed, truncated = source.list_bounded(container, limit=MAX_BLOBS, seconds=MAX_SECONDS)
    blobs = sorted(listed, key=lambda blob: blob.name)
    found = segments_in(blobs)
    if len(found) > MAX_SEGMENTS:
        found, truncated = found[:MAX_SEGMENTS], True
    models = model_files(found)
    if len(models) > MAX_MODELS:
        models, truncated = models[:MAX_MODELS], True
    attributes = {name: _attributes(source, container, name) for name in models}
    names = [blob.name for blob in blobs]
    segments = [
        {
            "name": segment.name,
            "path": segment.path,
            "layout": segment.layout,
            "snapshot": _snapshot(segment, _under(blobs, names, segment.path), settled),
            "attributes": [
                {"name": a.name, "type": a.type}
                for a in attributes.get(segment.model, {}).get(segment.name, ())
            ],
        }
        for segment in found
    ]
    return {"container": container, "segments": segments, "truncated": truncated}


def _attributes(source: BlobSource, container: str, name: str) -> dict[str, tuple[Attribute, ...]]:
    try:
        document = source.read_small(container, name)
    except SourceMalformed:  # too large to be a model.json: its segments show no attributes
        return {}
    return model_attributes(document) if document else {}


def _under(blobs: list[BlobEntry], names: list[str], prefix: str) -> list[BlobEntry]:
    """The blobs whose names start with ``prefix`` (the listing is in name order)."""
    start = bisect.bisect_left(names, prefix)
    end = bisect.bisect_left(names, prefix + "\U0010ffff")
    return blobs[start:end]


def _snapshot(
    segment: FoundSegment, blobs: list[BlobEntry], settled: Callable[[Snapshot], bool]
) -> dict[str, Any] | None:
    """The segment's newest settled snapshot, or its newest one (``settled``: false) while
    none is settled; None when none is whole (the listing was cut inside it)."""
    found = [
        s
        for s in snapshots(segment.path, blobs)
        if (s.folder is None) == (segment.layout == "flat")
    ]
    if not found:
        return None
    ready = [s for s in found if settled(s)]
    pick = ready[-1] if ready else found[-1]
    return {
        "id": pick.id,
        "taken_at": pick.taken_at.isoformat().replace("+00:00", "Z"),
        "settled": bool(ready),
        "partitions": len(pick.partitions),
        "rows": None,  # counting rows would read them: discovery reads metadata only
    }
