"""Command line: the same pipeline outside the Functions host.

    python -m shared [--settings local.settings.json] validate
    python -m shared [--settings ...] exports
    python -m shared [--settings ...] run NAME        # export the newest snapshot now, here
    python -m shared [--settings ...] enqueue NAME    # queue a run for the worker
    python -m shared [--settings ...] work [--once]   # process the queue here, as the host would
    python -m shared [--settings ...] runs NAME [--limit N]
    python -m shared [--settings ...] purge NAME [--audience ID]   # erase stored digests
    python -m shared [--settings ...] connect CONNECTION --client-id ID [--port 8765 | --paste]

Exit codes: 0 success, 1 a run failed, 2 bad configuration or usage, 3 not found, 4 the export
is disabled (no run was made), 141 the output's reader went away (``| head``); each error class
in ``shared.core.errors`` carries its own.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from shared.adapters import local_token
from shared.adapters.secretstore import EnvironmentSecrets, KeyVaultSecrets
from shared.admin import definition_changes, purge
from shared.connections import terminal
from shared.core import definitions
from shared.core.definitions import default_connection
from shared.core.errors import ConfigurationError, ExportError, NotFound
from shared.core.privacy import install_log_filter
from shared.core.runrecord import RunRecord, RunStatus, Trigger
from shared.core.settings import Settings, exports_path
from shared.entry import api, localworker, signin
from shared.runs import service
from shared.runtime import current


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_log_filter()
    logging.getLogger("azure").setLevel(logging.WARNING)
    try:
        if args.settings:
            load_local_settings(Path(args.settings))
        return int(args.command(args))
    except ConfigurationError as exc:  # each error class says its own exit code
        _print({"error": "configuration", "problems": exc.problems}, sys.stderr)
        return exc.exit_code
    except ExportError as exc:
        _print({"error": type(exc).__name__, "message": str(exc), **exc.details()}, sys.stderr)
        return exc.exit_code


def load_local_settings(path: Path) -> None:
    """Copy ``Values`` of a local.settings.json into the environment (set variables win)."""
    try:
        values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigurationError(f"--settings {path}: not a readable local.settings.json") from exc
    for name, value in values.items():
        os.environ.setdefault(name, str(value))


def _validate(args: argparse.Namespace) -> int:
    loaded = definitions.load(Path(args.exports) if args.exports else exports_path())
    enabled = sum(e.enabled for e in loaded.exports)
    if loaded.problems:
        raise ConfigurationError(loaded.problems)
    _print(
        {
            "valid": True,
            "exports": len(loaded.exports),
            "enabled": enabled,
            "connections": [c.name for c in loaded.connections],
        }
    )
    return 0


def _exports(_: argparse.Namespace) -> int:
    _print(api.list_exports(current(), signin.command_line()).body)
    return 0


def _run(args: argparse.Namespace) -> int:
    record = service.run_now(
        current(),
        args.name,
        dry_run=args.dry_run,
        allow_large_removal=args.allow_large_removal,
        snapshot=args.snapshot,
    )
    _print(_answer(record))
    return 0 if record.status == RunStatus.SUCCEEDED else 1


def _answer(record: RunRecord) -> dict[str, Any]:
    """A run as the HTTP API answers it: the record, and for a failed run its advice."""
    return dict(api.get_run(current(), signin.command_line(), record.export, record.run_id).body)


def _enqueue(args: argparse.Namespace) -> int:
    record = service.request_run(
        current(),
        args.name,
        Trigger.CLI,
        dry_run=args.dry_run,
        allow_large_removal=args.allow_large_removal,
        snapshot=args.snapshot,
    )
    _print(record.as_dict())
    return 0


def _connect(args: argparse.Namespace) -> int:
    rt = current()
    if isinstance(rt.secrets, KeyVaultSecrets):
        where = f"Key Vault {rt.settings.key_vault_url}"
    elif isinstance(rt.secrets, EnvironmentSecrets) and rt.secrets.file is not None:
        where = f"the local secret file {rt.secrets.file} (local runs only)"
    else:
        raise ConfigurationError("connect needs KEY_VAULT_URL or a local secret file")
    if not definitions.is_connection_name(args.name):
        raise ConfigurationError(
            f"connect: {args.name!r} cannot be a connection's name (1-63 lowercase letters, "
            "digits or '-', starting and ending with a letter or digit)"
        )
    # Declared or not yet: its secrets' names follow from its name alone.
    connection = default_connection(args.name)
    if sys.stdin.isatty():
        client_secret = getpass.getpass("Snapchat app client secret: ")
    else:
        client_secret = sys.stdin.readline().strip()
    if not client_secret:
        raise ConfigurationError("no client secret given")

    def show(url: str) -> None:
        print("Open this address, sign in as an Admin or Data Manager of the ad account and")
        print(f"allow access:\n\n  {url}\n", flush=True)

    def paste() -> str:
        try:
            return input("Paste the address your browser was sent to: ")
        except EOFError:
            raise ConfigurationError("connect: no address was pasted") from None

    terminal.connect(
        rt.secrets,
        connection,
        client_id=args.client_id,
        client_secret=client_secret,
        token_url=rt.settings.snapchat_token_url,
        session=rt.http,
        show=show,
        listener=None if args.paste else terminal.CallbackListener(args.port),
        paste=paste if args.paste else None,
        redirect_uri=args.redirect_uri or "",
        authorize_base=rt.settings.snapchat_authorize_url or terminal.AUTHORIZE_URL,
    )
    stored = list(connection.secret_names)
    _print({"connection": connection.name, "stored_secrets": stored, "stored_in": where})
    return 0


def _work(args: argparse.Namespace) -> int:
    """Process the jobs queue here, with the app's real queue handlers, as the host would."""
    # The handlers live in function_app, the other entry point; imported only for this
    # command, since importing it builds the Functions app.
    import function_app  # noqa: PLC0415

    rt = current()
    connection = rt.settings.app_storage.connection_string
    if not connection:
        raise ConfigurationError(
            "work: AzureWebJobsStorage must be a connection string (the local queue, e.g. "
            "Azurite); in Azure the Functions host processes the queue"
        )
    seen: dict[tuple[str, str], None] = {}  # the runs delivered, in order
    try:
        delivered = localworker.work(
            connection,
            rt.settings.jobs_queue,
            handle=localworker.noting(function_app.export_worker, seen),
            give_up=localworker.noting(function_app.export_gave_up, seen),
            once=args.once,
            poll_seconds=args.poll_seconds,
            visibility_timeout=args.visibility_timeout,
            idle_seconds=args.idle_seconds,
        )
    except KeyboardInterrupt:  # Ctrl-C: still say what became of the runs handled so far
        delivered = None
    runs = [_outcome(rt.runs.get(export, run_id), export, run_id) for export, run_id in seen]
    _print({"queue": rt.settings.jobs_queue, "deliveries": delivered, "runs": runs})
    return 1 if any(run["status"] == RunStatus.FAILED for run in runs) else 0


def _outcome(record: RunRecord | None, export: str, run_id: str) -> dict[str, Any]:
    """What became of a run the worker was handed: its status now, and why a failed one
    ended, with the advice for it."""
    if record is None:
        return {"export": export, "run_id": run_id, "status": "unknown"}
    answer = _answer(record)
    keep = ("export", "run_id", "status", "snapshot", "dry_run", "uploaded", "error_kind",
            "error", "advice", "advice_field", "columns")  # fmt: skip
    return {key: answer[key] for key in keep if key in answer}


def _purge(args: argparse.Namespace) -> int:
    rt = current()
    done = purge.purge(rt, args.name, audience=args.audience, by=signin.command_line().label)
    known = rt.definitions.export(args.name) or rt.definitions.broken_export(args.name)
    if not done["deleted"] and known is None:
        # Most likely a misspelt name: say so, as for any unknown export.
        raise NotFound(f"no export named {args.name!r}, and no stored digests under that name")
    _print(done)
    return 0


def _import(args: argparse.Namespace) -> int:
    plan = definition_changes.import_file(
        current(),
        Path(args.file),
        prune=args.prune,
        dry_run=args.dry_run,
        by=signin.command_line().label,
    )
    _print({"dry_run": args.dry_run, **plan})
    return 0


def _export_definitions(args: argparse.Namespace) -> int:
    document = definition_changes.export_document(current())
    if args.output:
        Path(args.output).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        _print({"written": args.output, "exports": len(document["exports"]),
                "connections": len(document["connections"])})  # fmt: skip
    else:
        _print(document)
    return 0


def _runs(args: argparse.Namespace) -> int:
    reply = api.list_runs(current(), signin.command_line(), args.name, str(args.limit))
    _print(reply.body)
    return 0 if reply.status == 200 else 2


Commands = Any  # argparse's subparsers action: its type is private


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared", description="Customer Insights to Snapchat exporter"
    )
    parser.add_argument("--settings", help="a local.settings.json whose Values to use")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    validate = commands.add_parser("validate", help="check the settings and export definitions")
    validate.add_argument("--exports", help="definitions file (default: EXPORTS_FILE)")
    validate.set_defaults(command=_validate)
    commands.add_parser("exports", help="list exports and their last runs").set_defaults(
        command=_exports
    )
    _run_commands(commands)
    _connect_command(commands)
    _work_command(commands)
    _definitions_commands(commands)
    _data_commands(commands)
    return parser


def _run_commands(commands: Commands) -> None:
    run = commands.add_parser("run", help="export the newest snapshot now, in this process")
    enqueue = commands.add_parser("enqueue", help="queue a run for the queue worker")
    for command, handler in ((run, _run), (enqueue, _enqueue)):
        command.add_argument("name")
        command.add_argument(
            "--dry-run", action="store_true", help="count what would change, send nothing"
        )
        command.add_argument(
            "--allow-large-removal",
            action="store_true",
            help="let this one mirror run remove more than the export's removal safeguard allows",
        )
        command.add_argument(
            "--snapshot",
            help="run this snapshot (e.g. the one a dry run showed) instead of the newest",
        )
        command.set_defaults(command=handler)


def _connect_command(commands: Commands) -> None:
    link = commands.add_parser("connect", help="authorise a Snapchat account for a connection")
    link.add_argument("name", help="the connection (as in exports.json)")
    link.add_argument("--client-id", required=True, help="the Snapchat app's OAuth client ID")
    link.add_argument(
        "--port", type=int, default=8765, help="redirect URI http://127.0.0.1:PORT/callback"
    )
    link.add_argument(
        "--paste", action="store_true", help="paste the redirected address instead of listening"
    )
    link.add_argument(
        "--redirect-uri", help="with --paste: the redirect URI registered for the app"
    )
    link.set_defaults(command=_connect)


def _work_command(commands: Commands) -> None:
    work = commands.add_parser(
        "work", help="process queued runs here with the real queue handlers (no Functions host)"
    )
    work.add_argument("--once", action="store_true", help="stop when the queue is empty")
    work.add_argument(
        "--idle-seconds",
        type=float,
        help="stop once the queue has stayed empty this long (one of several workers)",
    )
    work.add_argument(
        "--poll-seconds", type=float, default=5.0, help="wait between looks at an empty queue"
    )
    work.add_argument(
        "--visibility-timeout",
        type=int,
        default=600,
        help="seconds a job being processed stays hidden from other workers",
    )
    work.set_defaults(command=_work)


def _definitions_commands(commands: Commands) -> None:
    stored = commands.add_parser(
        "definitions", help="the stored export and connection definitions, to or from a file"
    ).add_subparsers(required=True, metavar="ACTION")
    load = stored.add_parser("import", help="make the store hold a file's definitions")
    load.add_argument("file", help="an exports.json document")
    load.add_argument("--prune", action="store_true", help="also delete what the file lacks")
    load.add_argument("--dry-run", action="store_true", help="only say what would change")
    load.set_defaults(command=_import)
    save = stored.add_parser("export", help="print (or write) the stored definitions as a file")
    save.add_argument("--output", help="write to this file instead of printing")
    save.set_defaults(command=_export_definitions)


def _data_commands(commands: Commands) -> None:
    """Purge, runs and the local token: what the app keeps, and how to reach it locally."""
    erase = commands.add_parser(
        "purge", help="erase an export's stored digests (mirror state), for one audience or all"
    )
    erase.add_argument("name", help="the export (also one deleted meanwhile)")
    erase.add_argument("--audience", help="only this audience's")
    erase.set_defaults(command=_purge)
    runs = commands.add_parser("runs", help="show an export's recent runs, newest first")
    runs.add_argument("name")
    runs.add_argument("--limit", type=int, default=10)
    runs.set_defaults(command=_runs)
    token = commands.add_parser(
        "local-token",
        help="local mode: print the console's address with the local token (made on first use)",
    )
    where = "where the Functions host listens (default http://127.0.0.1:7071)"
    token.add_argument("--base", default="http://127.0.0.1:7071", help=where)
    token.set_defaults(command=_local_token)


def _local_token(args: argparse.Namespace) -> int:
    """What a developer opens (or a script sends as X-Local-Token) to reach the app in local
    mode; the token stays in a file only they can read."""
    settings = Settings.from_env()
    if settings.in_azure:
        raise ConfigurationError("local-token: the app is hosted; sign-in is the platform's there")
    token = local_token.read_or_create(settings.local_token_file)
    base = args.base.rstrip("/")
    _print({"console": f"{base}/api/console/?{signin.LOCAL_TOKEN_QUERY}={token}",
            "header": f"{signin.LOCAL_TOKEN_HEADER.title()}: {token}",
            "file": str(settings.local_token_file)})  # fmt: skip
    return 0


def _print(value: Any, stream: Any = None) -> None:
    print(json.dumps(value, indent=2), file=stream or sys.stdout)
