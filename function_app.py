"""Azure Functions entry points: triggers only. Each handler turns its binding input into
plain values, calls one function of ``shared``, and turns the result back.

HTTP routes are anonymous at the Functions level: the platform's sign-in (App Service
Authentication) stands in front of them, and every handler asks ``shared.entry.signin`` who the
caller is, which refuses every call when the platform's sign-in is off (see the README's
*Sign-in and roles*). A function key says nothing about who calls, so keys protect nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import azure.functions as func

from shared import allocator
from shared.adapters import telemetry
from shared.adapters.definition_store import DefinitionType
from shared.adapters.jobqueue import Job
from shared.connections import browser
from shared.core.access import Principal
from shared.core.privacy import install_log_filter
from shared.entry import api, segments, signin, web
from shared.runs import events, service
from shared.runtime import Runtime, current

allocator.limit_arenas()  # before the export's threads: freed memory is reused (see there)
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
telemetry.configure()  # Azure Monitor when APPLICATIONINSIGHTS_CONNECTION_STRING is set
install_log_filter()  # on every handler, Azure Monitor's too: no secret leaves in a log
# The Azure SDKs log every HTTP request at INFO; keep their warnings only.
logging.getLogger("azure").setLevel(logging.WARNING)
log = logging.getLogger("function_app")

ANONYMOUS = (
    func.AuthLevel.ANONYMOUS
)  # the platform's sign-in and shared.entry.signin protect routes


def _serve(
    req: func.HttpRequest, call: Callable[[Runtime, Principal], api.Reply]
) -> func.HttpResponse:
    def answer() -> api.Reply:
        rt = current()
        return call(rt, signin.caller(rt.settings, req.headers, str(req.url), req.method))

    reply = api.handle_errors(answer)
    headers = {**web.API_HEADERS, **reply.headers}
    return func.HttpResponse(
        reply.json(), status_code=reply.status, headers=headers, mimetype="application/json"
    )


def _page(page: web.Page) -> func.HttpResponse:
    return func.HttpResponse(
        page.body, status_code=page.status, headers=page.headers, mimetype=page.content_type
    )


def _base_url(req: func.HttpRequest) -> str:
    return str(req.url).split("/api/", 1)[0]


def _content_type(req: func.HttpRequest) -> str:
    return str(req.headers.get("Content-Type") or "")


def _name(req: func.HttpRequest) -> str:
    return str(req.route_params.get("name", ""))


# -- runs ---------------------------------------------------------------------------------


@app.route(route="exports/{name}/runs", methods=["POST"], auth_level=ANONYMOUS)
def start_run(req: func.HttpRequest) -> func.HttpResponse:
    body, base, media = req.get_body(), _base_url(req), _content_type(req)
    return _serve(req, lambda rt, who: api.start_run(rt, who, _name(req), body, base, media))


@app.route(route="exports/{name}/runs/{run_id}", methods=["GET"], auth_level=ANONYMOUS)
def get_run(req: func.HttpRequest) -> func.HttpResponse:
    run_id = req.route_params.get("run_id", "")
    return _serve(req, lambda rt, who: api.get_run(rt, who, _name(req), run_id))


@app.route(route="exports/{name}/runs", methods=["GET"], auth_level=ANONYMOUS)
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    limit, query = req.params.get("limit"), {k: str(v) for k, v in req.params.items()}
    return _serve(req, lambda rt, who: api.list_runs(rt, who, _name(req), limit, query))


@app.route(route="exports/{name}/purge", methods=["POST"], auth_level=ANONYMOUS)
def purge_export(req: func.HttpRequest) -> func.HttpResponse:
    body, media = req.get_body(), _content_type(req)
    return _serve(req, lambda rt, who: api.purge_export(rt, who, _name(req), body, media))


# -- definitions --------------------------------------------------------------------------


@app.route(route="exports", methods=["GET"], auth_level=ANONYMOUS)
def list_exports(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, api.list_exports)


@app.route(route="connections", methods=["GET"], auth_level=ANONYMOUS)
def list_connections(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, api.list_connections)


def _get(req: func.HttpRequest, kind: DefinitionType) -> func.HttpResponse:
    return _serve(req, lambda rt, who: api.get_definition(rt, who, kind, _name(req)))


def _put(req: func.HttpRequest, kind: DefinitionType) -> func.HttpResponse:
    body, if_match = req.get_body(), req.headers.get("If-Match") or None
    media = _content_type(req)
    return _serve(req, lambda rt, who: api.put_definition(
        rt, who, kind, _name(req), body, if_match=if_match, content_type=media))  # fmt: skip


def _delete(req: func.HttpRequest, kind: DefinitionType) -> func.HttpResponse:
    if_match = req.headers.get("If-Match") or None
    return _serve(req, lambda rt, who: api.delete_definition(
        rt, who, kind, _name(req), if_match=if_match))  # fmt: skip


def _history(req: func.HttpRequest, kind: DefinitionType) -> func.HttpResponse:
    limit = req.params.get("limit")
    return _serve(req, lambda rt, who: api.definition_history(rt, who, kind, _name(req), limit))


@app.route(route="exports/{name}", methods=["GET"], auth_level=ANONYMOUS)
def get_export(req: func.HttpRequest) -> func.HttpResponse:
    return _get(req, "export")


@app.route(route="exports/{name}", methods=["PUT"], auth_level=ANONYMOUS)
def put_export(req: func.HttpRequest) -> func.HttpResponse:
    return _put(req, "export")


@app.route(route="exports/{name}", methods=["DELETE"], auth_level=ANONYMOUS)
def delete_export(req: func.HttpRequest) -> func.HttpResponse:
    return _delete(req, "export")


@app.route(route="exports/{name}/history", methods=["GET"], auth_level=ANONYMOUS)
def export_history(req: func.HttpRequest) -> func.HttpResponse:
    return _history(req, "export")


@app.route(route="connections/{name}", methods=["GET"], auth_level=ANONYMOUS)
def get_connection(req: func.HttpRequest) -> func.HttpResponse:
    return _get(req, "connection")


@app.route(route="connections/{name}", methods=["PUT"], auth_level=ANONYMOUS)
def put_connection(req: func.HttpRequest) -> func.HttpResponse:
    return _put(req, "connection")


@app.route(route="connections/{name}", methods=["DELETE"], auth_level=ANONYMOUS)
def delete_connection(req: func.HttpRequest) -> func.HttpResponse:
    return _delete(req, "connection")


@app.route(route="connections/{name}/history", methods=["GET"], auth_level=ANONYMOUS)
def connection_history(req: func.HttpRequest) -> func.HttpResponse:
    return _history(req, "connection")


@app.route(route="me", methods=["GET"], auth_level=ANONYMOUS)
def me(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, api.me)


@app.route(route="connections/{name}/connect", methods=["POST"], auth_level=ANONYMOUS)
def start_connect(req: func.HttpRequest) -> func.HttpResponse:
    base = _base_url(req)
    return _serve(req, lambda rt, who: api.start_connect(rt, who, _name(req), base))


# -- choosing instead of typing: segments and preview ------------------------------------


@app.route(route="segments", methods=["GET"], auth_level=ANONYMOUS)
def list_segments(req: func.HttpRequest) -> func.HttpResponse:
    container = req.params.get("container")
    return _serve(req, lambda rt, who: segments.list_segments(rt, who, container))


@app.route(route="preview", methods=["POST"], auth_level=ANONYMOUS)
def preview_export(req: func.HttpRequest) -> func.HttpResponse:
    body, media, query = req.get_body(), _content_type(req), dict(req.params)
    return _serve(req, lambda rt, who: segments.preview_export(rt, who, body, media, query))


# -- the console --------------------------------------------------------------------------


@app.route(route="console/{*path}", methods=["GET"], auth_level=ANONYMOUS)
def console(req: func.HttpRequest) -> func.HttpResponse:
    def signed_in() -> object:
        return signin.caller(current().settings, req.headers, str(req.url), token_in_query=True)

    path = str(req.route_params.get("path") or "")
    return _page(web.console_page(path, str(req.url), signed_in))


@app.route(route=browser.CALLBACK_ROUTE, methods=["GET"], auth_level=ANONYMOUS)
def finish_connect(req: func.HttpRequest) -> func.HttpResponse:
    """Where Snapchat sends the browser back; answers a redirect to the console."""
    query = {k: str(v) for k, v in req.params.items()}
    return _page(api.finish_connect(current, req.headers, str(req.url), query))


# -- timer and queue ----------------------------------------------------------------------


@app.timer_trigger(
    schedule="%EXPORT_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
def find_new_snapshots(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("Timer is past due; checking for snapshots now")
    service.schedule(current())


@app.event_grid_trigger(arg_name="event")
def blob_created(event: func.EventGridEvent) -> None:
    """Event Grid's BlobCreated for the export account: check the exports it concerns now."""
    data = event.get_json()
    url = str(data.get("url", "")) if isinstance(data, dict) else ""
    events.on_event(current(), event.event_type, event.subject or "", url, event.event_time)


def _job(message: func.QueueMessage) -> Job | None:
    try:
        return Job.from_json(message.get_body().decode("utf-8", errors="replace"))
    except ValueError as exc:
        log.error("Queue message %s is not an export job (%s); dropped", message.id, exc)
        return None


@app.queue_trigger(arg_name="message", queue_name="%JOBS_QUEUE%", connection="AzureWebJobsStorage")
def export_worker(message: func.QueueMessage) -> None:
    if job := _job(message):
        # A failure worth retrying is raised: the queue delivers the job again, and the run
        # resumes after its last accepted batch.
        service.process(current(), job)


@app.queue_trigger(
    arg_name="message", queue_name="%JOBS_QUEUE%-poison", connection="AzureWebJobsStorage"
)
def export_gave_up(message: func.QueueMessage) -> None:
    if job := _job(message):
        service.give_up(current(), job)
