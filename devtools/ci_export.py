"""Writes a realistic Customer Insights segment export into Blob Storage.

For the demo, the tests and the benchmark: ``profiles`` rows of a segment table split into
numbered CSV partitions under ``<path>/<yyyy>/<MM>/<dd>/<HHmm>/``, with a CDM ``model.json``.
Some emails are empty, malformed, repeated (in another spelling) or already hashed, as in real
exports. The expected result is worked out here with ``hashlib`` alone, independently of the
app's own normalisation code, so that tests comparing against it can catch the app's mistakes.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from azure.storage.blob import BlobServiceClient

COLUMNS = ("CustomerId", "FirstName", "LastName", "EMail", "City", "Address", "LifetimeValue")
_FIRST = ("Ada", "Grace", "Linus", "Mae", "Omar", "Priya", "Chen", "Sofia", "Tariq", "Zoe")
_LAST = ("Lovelace", "Hopper", "O'Neil", "Jemison", "Haddad", "Patel", "Wei", "García", "Khan")
_CITY = ("Seattle", "London", "Zürich", "Lagos", "São Paulo", "Tokyo", "Nairobi", "Oslo")
_DOMAINS = ("example.com", "contoso.com", "fabrikam.co.uk", "mail.example.org")
_INVALID = ("not-an-email", "someone@", "@example.com", "a@b", "two@@example.com", "x y@z.com")


@dataclass
class GeneratedExport:
    container: str
    path: str
    snapshot: str
    partitions: list[str] = field(default_factory=list)
    expected: set[bytes] = field(default_factory=set)  # SHA-256 digests Snapchat should hold
    rows: int = 0
    empty: int = 0
    invalid: int = 0
    duplicates: int = 0
    prehashed: int = 0

    @property
    def expected_hex(self) -> set[str]:
        return {digest.hex() for digest in self.expected}


def segment_path(
    instance: str = "9f1c2b3a-4d5e-6f70-8192-a3b4c5d6e7f8", segment: str = "HighValueSegment"
) -> str:
    return f"CustomerInsights_{instance}/BlobExport/{segment}"


def write_export(
    service: BlobServiceClient,
    *,
    container: str,
    path: str,
    profiles: int,
    partitions: int = 4,
    taken_at: datetime | None = None,
    header: bool = True,
    model: bool = True,
    seed: int = 7,
    email_column: str = "EMail",
) -> GeneratedExport:
    """Write one snapshot of ``profiles`` rows and return what Snapchat should end up with."""
    taken_at = taken_at or datetime.now(UTC)
    folder = f"{path}/{taken_at:%Y/%m/%d/%H%M}"
    table = path.rsplit("/", 1)[-1]
    columns = tuple(email_column if c == "EMail" else c for c in COLUMNS)
    result = GeneratedExport(container=container, path=path, snapshot=f"{taken_at:%Y/%m/%d/%H%M}")
    client = service.get_container_client(container)
    if not client.exists():
        client.create_container()
    rows = _rows(profiles, random.Random(seed), result)
    per_partition = -(-profiles // partitions) if profiles else 0
    for number in range(1, partitions + 1):
        name = f"{folder}/{table}_{number}.csv"
        count = min(per_partition, profiles - per_partition * (number - 1))
        client.upload_blob(
            name,
            _csv(rows, max(count, 0), columns if header else None),
            overwrite=True,
            max_concurrency=2,
        )
        result.partitions.append(name)
    if model:
        document = model_json(
            service,
            container=container,
            table=table,
            partitions=result.partitions,
            columns=columns,
            header=header,
        )
        client.upload_blob(
            f"{path.rsplit('/', 1)[0]}/model.json", json.dumps(document, indent=2), overwrite=True
        )
    return result


def model_json(
    service: BlobServiceClient,
    *,
    container: str,
    table: str,
    partitions: list[str],
    columns: tuple[str, ...],
    header: bool,
) -> dict[str, object]:
    base = service.get_container_client(container).url
    return {
        "name": "CustomerInsights",
        "version": "1.0",
        "modifiedTime": datetime.now(UTC).isoformat(),
        "entities": [
            {
                "$type": "LocalEntity",
                "name": table,
                "attributes": [
                    {"name": c, "dataType": "double" if c == "LifetimeValue" else "string"}
                    for c in columns
                ],
                "partitions": [
                    {
                        "name": f"{table}_{i}",
                        "refreshTime": datetime.now(UTC).isoformat(),
                        "location": f"{base}/{name}",
                        "fileFormatSettings": {
                            "$type": "CsvFormatSettings",
                            "columnHeaders": header,
                            "delimiter": ",",
                            "quoteStyle": "QuoteStyle.Csv",
                            "csvStyle": "CsvStyle.QuoteAlways",
                            "encoding": "UTF-8",
                        },
                    }
                    for i, name in enumerate(partitions, start=1)
                ],
            }
        ],
    }


def _csv(rows: Iterator[list[str]], count: int, header: tuple[str, ...] | None) -> Iterator[bytes]:
    lines: list[str] = []
    if header is not None:
        lines.append(",".join(header))
    for _ in range(count):
        lines.append(",".join(_quote(cell) for cell in next(rows)))
        if len(lines) >= 5000:
            yield ("\r\n".join(lines) + "\r\n").encode()
            lines = []
    if lines:
        yield ("\r\n".join(lines) + "\r\n").encode()


def _quote(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"'


def _rows(profiles: int, rng: random.Random, result: GeneratedExport) -> Iterator[list[str]]:
    """Profile rows; the mix of bad and repeated emails is counted into ``result``."""
    earlier: list[str] = []
    for number in range(profiles):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        roll = rng.random()
        canonical = f"{first.lower()}.{number}@{rng.choice(_DOMAINS)}"
        if roll < 0.02:
            cell = rng.choice(("", "   "))
            result.empty += 1
        elif roll < 0.04:
            cell = rng.choice(_INVALID)
            result.invalid += 1
        elif roll < 0.07 and earlier:
            cell = _respell(rng.choice(earlier), rng)
            result.duplicates += 1
        elif roll < 0.12:
            digest = hashlib.sha256(canonical.encode()).hexdigest()
            cell = digest.upper() if rng.random() < 0.5 else digest
            result.prehashed += 1
            result.expected.add(bytes.fromhex(digest))
        else:
            cell = _respell(canonical, rng)
            result.expected.add(hashlib.sha256(canonical.encode()).digest())
            if len(earlier) < 10_000:
                earlier.append(canonical)
        result.rows += 1
        address = f"{number % 900 + 1} {rng.choice(_CITY)} Road, Flat {number % 7}\nFloor 2"
        yield [
            f"cust-{number:09d}", first, last, cell, rng.choice(_CITY), address,
            f"{rng.random() * 5000:.2f}",
        ]  # fmt: skip


def _respell(email: str, rng: random.Random) -> str:
    """The same address as a person might have typed it: other case, stray spaces."""
    roll = rng.random()
    if roll < 0.2:
        return email.upper()
    if roll < 0.35:
        return f"  {email.capitalize()} "
    return email


def upload_folder(
    service: BlobServiceClient, folder: Path, *, container: str, prefix: str = ""
) -> list[str]:
    """Copy a Customer Insights export folder (as downloaded from its storage account) into
    ``container``, keeping the paths below ``folder``; returns the blob names written."""
    client = service.get_container_client(container)
    if not client.exists():
        client.create_container()
    written = []
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = "/".join(
            part for part in (prefix.strip("/"), file.relative_to(folder).as_posix()) if part
        )
        with file.open("rb") as data:
            client.upload_blob(name, data, overwrite=True, max_concurrency=2)
        written.append(name)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m devtools.ci_export``: put a Customer Insights export into local storage."""
    import argparse  # noqa: PLC0415
    import os  # noqa: PLC0415

    from shared.core.settings import connection_string  # noqa: PLC0415
    from shared.entry.cli import load_local_settings  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="python -m devtools.ci_export",
        description="Put a Customer Insights segment export into Blob Storage (Azurite locally): "
        "a generated one, or a real export folder copied from Customer Insights. The account is "
        "EXPORT_STORAGE's, else AzureWebJobsStorage's (connection strings).",
    )
    parser.add_argument("--settings", help="a local.settings.json whose Values to use")
    commands = parser.add_subparsers(required=True, dest="command", metavar="COMMAND")
    generate = commands.add_parser("generate", help="write a generated export (one snapshot)")
    generate.add_argument("--profiles", type=int, default=10_000)
    generate.add_argument("--partitions", type=int, default=4)
    generate.add_argument("--container", default="customer-insights")
    generate.add_argument("--path", default=segment_path(), help="the segment's folder")
    generate.add_argument("--email-column", default="EMail")
    generate.add_argument("--no-model", action="store_true", help="write no model.json")
    generate.add_argument("--seed", type=int, default=7)
    upload = commands.add_parser("upload", help="copy an export folder from disk")
    upload.add_argument("folder", type=Path, help="e.g. a downloaded CustomerInsights_<id> folder")
    upload.add_argument("--container", default="customer-insights")
    upload.add_argument("--prefix", default="", help="a folder in the container to put it under")
    args = parser.parse_args(argv)
    if args.settings:
        load_local_settings(Path(args.settings))
    named = os.environ.get("EXPORT_STORAGE") or os.environ.get("AzureWebJobsStorage")  # noqa: SIM112
    if not named:
        parser.error("set EXPORT_STORAGE or AzureWebJobsStorage (or pass --settings)")
    connection = connection_string(named)
    with BlobServiceClient.from_connection_string(connection) as service:
        if args.command == "upload":
            if not args.folder.is_dir():
                parser.error(f"{args.folder}: not a folder")
            names = upload_folder(service, args.folder, container=args.container,
                                  prefix=args.prefix)  # fmt: skip
            print(json.dumps({"container": args.container, "uploaded": len(names),
                              "first": names[:5]}, indent=2))  # fmt: skip
            return 0
        made = write_export(
            service,
            container=args.container,
            path=args.path,
            profiles=args.profiles,
            partitions=args.partitions,
            model=not args.no_model,
            seed=args.seed,
            email_column=args.email_column,
        )
    summary = {
        "source": {"container": made.container, "path": made.path},
        "snapshot": made.snapshot,
        "partitions": len(made.partitions),
        "rows": made.rows,
        "empty": made.empty,
        "invalid": made.invalid,
        "duplicates": made.duplicates,
        "prehashed": made.prehashed,
        "distinct_valid": len(made.expected),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
