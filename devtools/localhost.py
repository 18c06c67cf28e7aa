"""Plays the Functions host's HTTP part on loopback: a small web server that hands each
request, as a ``func.HttpRequest``, to the decorated handler of ``function_app`` whose route
and method match, and a background thread that delivers queued jobs to the real queue
handlers (``shared.entry.localworker``), as the host's queue trigger would.

It is what ``scripts/console`` and the browser tests serve the console with: the app's real
handlers, not a second implementation. Requests go to ``/api/<route>`` as on the host.
"""

from __future__ import annotations

import functools
import http.server
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from shared.entry import localworker

log = logging.getLogger(__name__)

ROUTE_PREFIX = "/api/"


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    methods: frozenset[str]
    handler: Callable[[func.HttpRequest], func.HttpResponse]
    literal_segments: int  # more literal segments win, as in the host's routing


@functools.cache
def app_functions() -> tuple[Any, ...]:
    """``function_app``'s functions, built once: the SDK refuses to build them twice in one
    process (as the host never does), so everything that needs them asks here."""
    import function_app  # noqa: PLC0415 - imported late: it builds the app on import

    return tuple(function_app.app.get_functions())


def routes() -> list[Route]:
    """Every HTTP-triggered function of ``function_app``, most specific first."""
    found = []
    for function in app_functions():
        trigger: Any = function.get_bindings()[0]
        if trigger.type != "httpTrigger":
            continue
        template = str(trigger.route)
        pattern = re.sub(r"\{\*(\w+)\}", r"(?P<\1>.*)", template)
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        literal = sum(1 for part in template.split("/") if not part.startswith("{"))
        found.append(
            Route(
                pattern=re.compile(f"{pattern}$"),
                methods=frozenset(str(m).upper() for m in trigger.methods),
                handler=function.get_user_function(),
                literal_segments=literal,
            )
        )
    return sorted(found, key=lambda r: -r.literal_segments)


class LocalHost:
    """Serve ``function_app``'s HTTP routes on 127.0.0.1 and deliver its queued jobs.

    ``with LocalHost(connection_string, queue) as host:`` — ``host.url`` is the base URL.
    """

    def __init__(
        self,
        connection_string: str,
        jobs_queue: str,
        *,
        port: int = 0,
        poll_seconds: float = 0.3,
    ) -> None:
        self._connection_string, self._queue = connection_string, jobs_queue
        self._poll = poll_seconds
        self._stop = threading.Event()
        self._routes = routes()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True, name="http"),
            threading.Thread(target=self._deliver_jobs, daemon=True, name="queue"),
        ]

    def __enter__(self) -> LocalHost:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=30)

    def _deliver_jobs(self) -> None:
        import function_app  # noqa: PLC0415

        while not self._stop.is_set():
            try:
                localworker.drain(
                    self._connection_string,
                    self._queue,
                    handle=function_app.export_worker,
                    give_up=function_app.export_gave_up,
                )
            except Exception as exc:  # the host keeps polling, so do we
                log.warning("Queue delivery failed: %s", type(exc).__name__)
            self._stop.wait(self._poll)

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        """The handler's answer to one request, or None when no route matches."""
        parts = urlsplit(target)
        if not parts.path.startswith(ROUTE_PREFIX):
            return None
        path = parts.path[len(ROUTE_PREFIX) :]
        for route in self._routes:
            matched = route.pattern.match(path)
            if matched and method in route.methods:
                # The URL as the browser asked for it (Host: localhost or 127.0.0.1), as the
                # Functions host builds it: the same-site check compares it with Origin.
                host = next((v for k, v in headers.items() if k.lower() == "host"), "")
                base = f"http://{host}" if host else self.url
                request = func.HttpRequest(
                    method,
                    f"{base}{target}",
                    headers=headers,
                    params=dict(parse_qsl(parts.query)),
                    route_params={k: v or "" for k, v in matched.groupdict().items()},
                    body=body,
                )
                return route.handler(request)
        return None

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path in ("/", ""):
                    self._send(302, b"", {"Location": "/api/console/"})
                    return
                headers = dict(self.headers.items())
                try:
                    response = host.dispatch(self.command, self.path, headers, body)
                except Exception:  # the host answers 500 and logs
                    where = urlsplit(self.path).path  # never the query: it can hold a code
                    log.exception("Handler failed for %s %s", self.command, where)
                    self._send(500, b"internal error", {"Content-Type": "text/plain"})
                    return
                if response is None:
                    self._send(404, b"not found", {"Content-Type": "text/plain"})
                    return
                out = dict(response.headers)
                out["Content-Type"] = response.mimetype or "text/plain"
                self._send(response.status_code, response.get_body(), out)

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "content-type"):
                        self.send_header(name, value)
                self.send_header("Content-Type", headers.get("Content-Type", "text/plain"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 - http.server's names

            def log_message(self, format: str, *args: object) -> None:
                pass  # query strings can carry an OAuth code: never log them

        return Handler
