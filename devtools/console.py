"""The console on loopback, with real data: ``scripts/console [--as admin|operator|reader]``.

Starts Azurite and the Snapchat sandbox, writes three Customer Insights segments into Azurite
(the demo's 100,000 profiles; a second segment whose file lacks the column its export
names, so that a failed run is there to see; a third, NewCustomers, that no export reads yet,
to pick in the console's form), runs both once through the real queue handler,
then serves the app's real HTTP handlers on 127.0.0.1 (``devtools.localhost``) and prints the
console's URL. The local principal (``LOCAL_PRINCIPAL``) is the role chosen with ``--as``.
Everything it starts stops with Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from azure.storage.blob import BlobServiceClient

from devtools.azurite import Azurite
from devtools.ci_export import GeneratedExport, segment_path, write_export
from devtools.localhost import LocalHost
from devtools.snapchat_sandbox import SnapchatSandbox
from devtools.worker import drain
from shared.core.settings import LOCAL_PRINCIPALS

if TYPE_CHECKING:
    from shared.runtime import Runtime

CONTAINER = "customer-insights"
EXPORTS = ("demo-high-value", "lapsed-customers")
AUDIENCES = {"demo-audience-0001": "Demo high-value customers",
             "brand-b-lapsed-0002": "Brand B lapsed customers"}  # fmt: skip
CLIENTS = {
    "demo": ("demo-client", "demo-client-secret-value", "demo-refresh-token-value"),
    "brand-b": ("brand-b-client", "brand-b-client-secret-value", "brand-b-refresh-token-value"),
    # Secrets stored, no connection yet: the one an Admin adds in the console.
    "brand-c": ("brand-c-client", "brand-c-client-secret-value", "brand-c-refresh-token-value"),
}
NEW_SEGMENT = ("2d4f6a8c-0e1f-4a3b-8c5d-6e7f8091a2b3", "NewCustomers")  # no export reads it yet
MATCH_SHARE = 0.62  # the sandbox's share of the identifiers sent that Snapchat matches
STATE_KEY = "7c" * 32  # the local mirror-state key: a demo value, never used in Azure


@dataclass(frozen=True)
class Site:
    env: dict[str, str]
    export: GeneratedExport  # the demo export: what its audience should hold


def definitions(high_value: str, lapsed: str) -> dict[str, object]:
    """Two connections (the local operator may use the first only) and an export on each."""
    return {
        "connections": [
            {
                "name": "demo",
                "display_name": "Demo Snapchat account",
                "allowed": [{"id": LOCAL_PRINCIPALS["operator"], "name": "Local operator"}],
            },
            {"name": "brand-b", "display_name": "Brand B (agency account)", "allowed": []},
        ],
        "exports": [
            {
                "name": EXPORTS[0],
                "description": "Demo: the high-value segment to a Snapchat customer list",
                "source": {"container": CONTAINER, "path": high_value},
                "audience_id": "demo-audience-0001",
                "connection": "demo",
                "columns": {"email": "EMail"},
                "enabled": True,
                "data_transfer_acknowledged": True,
                "lookalike": {
                    "type": "BALANCE",
                    "countries": ["US", "GB"],
                    "name": "Demo high-value lookalike",
                },
            },
            {
                "name": EXPORTS[1],
                "description": "Lapsed customers; its export file lacks the EMail column",
                "source": {"container": CONTAINER, "path": lapsed},
                "audience_id": "brand-b-lapsed-0002",
                "connection": "brand-b",
                "columns": {"email": "EMail"},
                "mode": "mirror",
                "enabled": True,
                "data_transfer_acknowledged": True,
            },
        ],
    }


def prepare(
    azurite: Azurite, snap: SnapchatSandbox, folder: Path, *, profiles: int, suffix: str = ""
) -> Site:
    """Write the exports and the definitions; the settings that point the app at them."""
    # Snapchat matches only a share of the people sent: the demo shows a match rate below 100 %.
    snap.configure(match_share=MATCH_SHARE)
    for client in CLIENTS.values():
        snap.add_client(*client)
    for audience, name in AUDIENCES.items():
        snap.add_audience(audience, name=name)
    high_value = segment_path()
    lapsed = segment_path("4b7e9d20-1c3a-4e5f-9a8b-7c6d5e4f3a2b", "LapsedCustomers")
    new_customers = segment_path(*NEW_SEGMENT)
    with BlobServiceClient.from_connection_string(azurite.connection_string) as blobs:
        export = write_export(
            blobs, container=CONTAINER, path=high_value, profiles=profiles, partitions=4
        )
        write_export(
            blobs, container=CONTAINER, path=lapsed, profiles=2_000, partitions=1,
            email_column="Email_Address", seed=11,
        )  # fmt: skip
        write_export(
            blobs, container=CONTAINER, path=new_customers, profiles=1_000, partitions=1, seed=5
        )
    exports_file = folder / "exports.json"
    exports_file.write_text(json.dumps(definitions(high_value, lapsed), indent=2))
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "EXPORTS_FILE": str(exports_file),
        "SNAPCHAT_API_URL": snap.api_url,
        "SNAPCHAT_TOKEN_URL": snap.token_url,
        "SNAPCHAT_AUTHORIZE_URL": snap.authorize_url,
        "JOBS_QUEUE": f"console-jobs{suffix}",
        "RUNS_TABLE": f"consoleruns{suffix.replace('-', '')}",
        "STATE_CONTAINER": f"console-state{suffix}",
        "SNAPSHOT_SETTLE_SECONDS": "0",  # the exports were written a moment ago, on purpose
        "UPLOAD_BATCH_SIZE": "10000",  # several batches, so that progress is there to see
        "LOCAL_SECRETS_FILE": str(folder / "secrets.json"),
        "SECRET_EXPORTER_STATE_KEY": STATE_KEY,
    }
    for connection, (client_id, secret, refresh) in CLIENTS.items():
        stem = f"SECRET_SNAPCHAT_{connection.upper().replace('-', '_')}"
        env |= {f"{stem}_CLIENT_ID": client_id, f"{stem}_CLIENT_SECRET": secret,
                f"{stem}_REFRESH_TOKEN": refresh}  # fmt: skip
    return Site(env=env, export=export)


def run_once(env: dict[str, str]) -> None:
    """Queue a run of each export, as the command line would, and let the worker take them."""
    from shared import runtime  # noqa: PLC0415 - after the settings exist
    from shared.runs import service  # noqa: PLC0415

    rt = runtime.current()
    for name in EXPORTS:
        service.request_run(rt, name, "cli", requested_by="scripts/console")
    drain(env["AzureWebJobsStorage"], env["JOBS_QUEUE"])
    check_audiences(rt)


def check_audiences(rt: Runtime) -> None:
    """Make each export's newest run's audience check now, as the queue would some minutes
    after the run: the demo shows Snapchat's matched estimate, the match rate and the
    lookalike at once. The sandbox processes uploads at once (``processing_seconds`` 0)."""
    from shared.runs import audience_checks  # noqa: PLC0415 - after the settings exist

    for name in EXPORTS:
        for record in rt.runs.recent(name, limit=1):
            if audience_checks.checkable(record):
                audience_checks.check(rt, record)


@dataclass(frozen=True)
class Running:
    host: LocalHost
    sandbox: SnapchatSandbox


@contextmanager
def running(role: str, *, port: int = 0, profiles: int = 100_000) -> Iterator[Running]:
    """Everything ``scripts/console`` starts, as a context: the host serving the console."""
    from shared import runtime  # noqa: PLC0415
    from shared.core.settings import Settings  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as folder, Azurite() as azurite, SnapchatSandbox() as snap:
        site = prepare(azurite, snap, Path(folder), profiles=profiles)
        os.environ.update(site.env, LOCAL_PRINCIPAL=role)
        runtime.install(runtime.build(Settings.from_env()))
        run_once(site.env)
        with LocalHost(site.env["AzureWebJobsStorage"], site.env["JOBS_QUEUE"], port=port) as host:
            yield Running(host, snap)
        runtime.current().http.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    roles = ("admin", "operator", "reader")
    parser.add_argument("--as", dest="role", choices=roles, default="admin",
                        help="who the local principal is (default admin)")  # fmt: skip
    parser.add_argument("--port", type=int, default=7071, help="loopback port (default 7071)")
    parser.add_argument("--profiles", type=int, default=100_000)
    args = parser.parse_args(argv)
    # Stopped with SIGTERM (a service manager, a test) as with Ctrl-C: everything started stops.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    print("Starting Azurite and the Snapchat sandbox; running the demo exports once ...")
    try:
        with running(args.role, port=args.port, profiles=args.profiles) as started:
            from shared import runtime  # noqa: PLC0415 - after the settings exist
            from shared.adapters import local_token  # noqa: PLC0415
            from shared.entry.signin import LOCAL_TOKEN_QUERY  # noqa: PLC0415

            token = local_token.read_or_create(runtime.current().settings.local_token_file)
            url = f"{started.host.url}/api/console/?{LOCAL_TOKEN_QUERY}={token}"
            print(f"\nThe console, signed in as the local {args.role}: {url}")
            print("Press Ctrl-C to stop.", flush=True)
            threading.Event().wait()
    except KeyboardInterrupt:
        print("\nStopped.")
    except OSError as exc:
        print(f"scripts/console: {exc} (is port {args.port} taken? try --port)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
