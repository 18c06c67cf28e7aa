"""Add mode sends while it reads: every identifier once, exactly, whatever the filter says.

The export is a realistic one (``devtools.ci_export``: empty, malformed, repeated and
already-hashed emails, repeats across partitions) read through the real queue handler; the
sandbox counts what each accepted request carried. An identifier sent twice would make the
requests carry more than the audience holds."""

from __future__ import annotations

import pytest
from azure.storage.blob import BlobServiceClient

from devtools.ci_export import write_export
from devtools.snapchat_sandbox import SnapchatSandbox
from shared.core import first_seen
from shared.export import add, digest_pool
from tests.conftest import AUDIENCE, App
from tests.snapshots import PATH, run, sent

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def small_buckets_and_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digest_pool, "BUCKET_TARGET", 400)
    monkeypatch.setattr(first_seen, "GROUP", 200)  # judged, and sent, as they are read


@pytest.mark.parametrize("filter_bits", [add.BITS, 64], ids=["filter", "saturated filter"])
@pytest.mark.parametrize("spill_mb", ["64", "0"], ids=["held", "spilled"])
def test_each_distinct_identifier_is_sent_once(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch, filter_bits: int, spill_mb: str,
) -> None:  # fmt: skip
    # A 64-bit filter takes almost every digest for a repeat: they are then all settled
    # after the read, against what was sent while reading.
    monkeypatch.setattr(add, "BITS", filter_bits)
    generated = write_export(blob_service, container=app.container, path=PATH,
                             profiles=3000, partitions=4)  # fmt: skip
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="150", SPILL_MEMORY_MB=spill_mb)
    record = run(app)
    assert record.status == "succeeded", record.error
    assert sandbox.identifiers(AUDIENCE) == generated.expected_hex
    carried = sent(sandbox, "POST")
    assert sum(carried) == len(generated.expected)  # none twice
    assert max(carried) <= 150
    assert (record.uploaded, record.duplicates) == (len(generated.expected), generated.duplicates)


def test_a_malformed_last_partition_fails_the_run_after_some_adds_and_a_fixed_one_completes(
    app: App, blob_service: BlobServiceClient, sandbox: SnapchatSandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Six partitions of one block each: the first are handed on (and sent) while the next
    # ones are still being hashed, so some are sent before the last one is parsed.
    generated = write_export(blob_service, container=app.container, path=PATH,
                             profiles=6000, partitions=6)  # fmt: skip
    last = blob_service.get_blob_client(app.container, generated.partitions[-1])
    good = last.download_blob().readall()
    last.upload_blob(good + b"1,ragged\n", overwrite=True)
    app.rebuild(monkeypatch, UPLOAD_BATCH_SIZE="100")

    failed = run(app)
    assert failed.status == "failed"
    assert generated.partitions[-1].rsplit("/", 1)[-1] in failed.error
    held = sandbox.identifiers(AUDIENCE)
    # Sent while the partitions before it were read: real members of the segment, counted.
    assert held
    assert held < generated.expected_hex
    assert failed.uploaded == len(held) == sum(sent(sandbox, "POST"))

    last.upload_blob(good, overwrite=True)
    fixed = run(app)
    assert fixed.status == "succeeded", fixed.error
    assert sandbox.identifiers(AUDIENCE) == generated.expected_hex
    assert fixed.uploaded == len(generated.expected)
