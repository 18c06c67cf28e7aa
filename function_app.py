"""Azure Functions entry points: triggers only. Each handler turns its binding input into
plain values, calls one function of ``shared``, and turns the result back."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import api, service
from shared.adapters.jobqueue import Job
from shared.core.privacy import install_log_filter
from shared.runtime import current

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
install_log_filter()
# The Azure SDKs log every HTTP request at INFO; keep their warnings only.
logging.getLogger("azure").setLevel(logging.WARNING)
log = logging.getLogger("function_app")


def _http(reply: api.Reply) -> func.HttpResponse:
    return func.HttpResponse(
        reply.json(), status_code=reply.status, headers=reply.headers, mimetype="application/json"
    )


def _base_url(req: func.HttpRequest) -> str:
    return str(req.url).split("/api/", 1)[0]


@app.route(route="exports/{name}/runs", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def start_run(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("name", "")
    return _http(
        api.handle_errors(lambda: api.start_run(current(), name, req.get_body(), _base_url(req)))
    )


@app.route(
    route="exports/{name}/runs/{run_id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION
)
def get_run(req: func.HttpRequest) -> func.HttpResponse:
    name, run_id = req.route_params.get("name", ""), req.route_params.get("run_id", "")
    return _http(api.handle_errors(lambda: api.get_run(current(), name, run_id)))


@app.route(route="exports/{name}/runs", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("name", "")
    return _http(api.handle_errors(lambda: api.list_runs(current(), name, req.params.get("limit"))))


@app.route(route="exports", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_exports(req: func.HttpRequest) -> func.HttpResponse:
    return _http(api.handle_errors(lambda: api.list_exports(current())))


# -- definitions ------------------------------------------------------------------------

_CHANGED_BY = "http (function key)"  # who changed a definition, until sign-in names the caller


def _if_match(req: func.HttpRequest) -> str | None:
    return req.headers.get("If-Match") or None


@app.route(route="exports/{name}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_export(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("name", "")
    return _http(api.handle_errors(lambda: api.get_definition(current(), "export", name)))


@app.route(route="exports/{name}", methods=["PUT"], auth_level=func.AuthLevel.FUNCTION)
def put_export(req: func.HttpRequest) -> func.HttpResponse:
    name, body, if_match = req.route_params.get("name", ""), req.get_body(), _if_match(req)
    return _http(api.handle_errors(lambda: api.put_definition(
        current(), "export", name, body, if_match=if_match, by=_CHANGED_BY)))  # fmt: skip


@app.route(route="exports/{name}", methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
def delete_export(req: func.HttpRequest) -> func.HttpResponse:
    name, if_match = req.route_params.get("name", ""), _if_match(req)
    return _http(api.handle_errors(lambda: api.delete_definition(
        current(), "export", name, if_match=if_match, by=_CHANGED_BY)))  # fmt: skip


@app.route(route="exports/{name}/history", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def export_history(req: func.HttpRequest) -> func.HttpResponse:
    name, limit = req.route_params.get("name", ""), req.params.get("limit")
    return _http(
        api.handle_errors(lambda: api.definition_history(current(), "export", name, limit))
    )


@app.route(route="connections", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_connections(req: func.HttpRequest) -> func.HttpResponse:
    return _http(api.handle_errors(lambda: api.list_connections(current())))


@app.route(route="connections/{name}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_connection(req: func.HttpRequest) -> func.HttpResponse:
    name = req.route_params.get("name", "")
    return _http(api.handle_errors(lambda: api.get_definition(current(), "connection", name)))


@app.route(route="connections/{name}", methods=["PUT"], auth_level=func.AuthLevel.FUNCTION)
def put_connection(req: func.HttpRequest) -> func.HttpResponse:
    name, body, if_match = req.route_params.get("name", ""), req.get_body(), _if_match(req)
    return _http(api.handle_errors(lambda: api.put_definition(
        current(), "connection", name, body, if_match=if_match, by=_CHANGED_BY)))  # fmt: skip


@app.route(route="connections/{name}", methods=["DELETE"], auth_level=func.AuthLevel.FUNCTION)
def delete_connection(req: func.HttpRequest) -> func.HttpResponse:
    name, if_match = req.route_params.get("name", ""), _if_match(req)
    return _http(api.handle_errors(lambda: api.delete_definition(
        current(), "connection", name, if_match=if_match, by=_CHANGED_BY)))  # fmt: skip


@app.route(route="connections/{name}/history", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def connection_history(req: func.HttpRequest) -> func.HttpResponse:
    name, limit = req.route_params.get("name", ""), req.params.get("limit")
    return _http(
        api.handle_errors(lambda: api.definition_history(current(), "connection", name, limit))
    )


@app.timer_trigger(
    schedule="%EXPORT_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
def find_new_snapshots(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("Timer is past due; checking for snapshots now")
    service.schedule(current())


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
