"""The app's OpenAPI document, corrected where FastAPI's default does not say what the API does.

- Every error body is ``{"detail": "<reason>"}`` (the official Agent Server's shape, serve_app/
  errors.py), validation errors too; FastAPI documents 422 as a list of objects.
- Path parameters that are record ids (thread, run, cron; an assistant under /assistants/) are
  UUIDs, as every route checks. An assistant is named by its UUID or by a registered graph's name
  (that graph's default assistant, as on the official server) wherever the API takes one: every
  ``assistant_id`` parameter and request field says so, and its schema is exactly that: a UUID
  or one of the graphs' names (an enum), so a fuzzer's generated runs and crons name an assistant
  that exists instead of bouncing off a 404 (the paths under /assistants/ are typed UUID all the
  same: a client following the schema sends what always works).
- Links (serve_app/openapi_links.py) from each operation answering a record to the operations
  taking its id, so a stateful fuzzer chains calls with real ids.
- The workspace and snapshot ids in paths carry the patterns the sandbox checks (anything else
  is a 400), and a new workspace's limits their installation's maxima (sandbox_cpus, ...).
- The streaming operations answer ``text/event-stream`` (FastAPI says JSON for them).
- The limits every route enforces (serve_app/limits.py) are documented as 413 and 431 answers,
  and a database outage (serve_app/errors.py) as a 503 with Retry-After.

A fuzzer (Schemathesis, tests/reliability/test_fuzz_openapi.py) checks responses against this
document, so it must not promise a shape the API does not answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from sandbox.models import WORKSPACE_ID
from sandbox.snapshots import SNAPSHOT_ID
from serve_app.openapi_links import add_links
from serve_app.routes.workspaces import create_limits

ERROR_SCHEMA = {"type": "object", "title": "Error", "required": ["detail"],
                "properties": {"detail": {"type": "string", "description": "Why the request failed."}}}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
COMMON_ERRORS = {
    "413": "The request body is over the API's limit (api_max_body_bytes).",
    "431": "The request's headers are over the API's limit (api_max_header_bytes).",
    "503": "A part the API needs (the database, an actor) does not answer; retry later (after a database outage, Retry-After says when).",
}
METHODS = ("get", "put", "post", "delete", "patch")
# Path parameters that are UUIDs wherever they appear: the records' keys are uuid columns, so
# anything else is answered 422 (serve_app/errors.py, Postgres refusing the value) or 404.
UUID_PATH_PARAMETERS = frozenset({"thread_id", "run_id", "cron_id"})
# Path parameters the sandbox checks against a pattern (a 400 otherwise).
PATTERNED_PATH_PARAMETERS = {"workspace_id": WORKSPACE_ID.pattern, "snapshot_id": SNAPSHOT_ID.pattern}
# Operations that answer 200 with a server-sent event stream (FastAPI documents JSON for them).
SSE_OPERATIONS = frozenset({("post", "/runs/stream"), ("post", "/threads/{thread_id}/runs/stream"),
                            ("get", "/threads/{thread_id}/runs/{run_id}/stream"), ("get", "/threads/{thread_id}/stream"),
                            ("post", "/threads/{thread_id}/stream/events")})
# No schema: Schemathesis checks each event (as {"event", "data", ...}) against one; the events'
# shapes are the official server's, free-form, as GET /events/stream documents them.
SSE_CONTENT: dict[str, Any] = {"text/event-stream": {}}
# Request schemas whose assistant_id names an existing assistant (not a new one's id, not an answer).
ASSISTANT_REFERENCES = frozenset({"RunCreate", "RunBatchItem", "CronCreate", "ThreadCronCreate", "CronSearch",
                                  "CronCount"})


def assistant_id_description(graph_ids: list[str]) -> str:
    names = f": {', '.join(graph_ids)}" if graph_ids else ""
    return f"Assistant UUID or graph name (the default assistant of a registered graph{names})."


def assistant_reference(field: dict[str, Any], graph_ids: list[str], description: str) -> dict[str, Any]:
    """``field``'s schema narrowed to what the API accepts: a UUID or a registered graph's name
    (kept nullable where it was optional; unchanged when no graph is known)."""
    if not graph_ids:
        return {**field, "description": description}
    nullable = any(option.get("type") == "null" for option in field.get("anyOf", ()))
    kept = {key: value for key, value in field.items() if key not in ("type", "minLength", "format", "anyOf")}
    options = [{"type": "string", "format": "uuid"}, {"type": "string", "enum": graph_ids}]
    return {**kept, "anyOf": options + ([{"type": "null"}] if nullable else []), "description": description}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    context = getattr(app.state, "context", None)
    graph_ids = sorted(context.graphs.ids()) if context is not None else []
    describe_assistant = assistant_id_description(graph_ids)
    for name in ASSISTANT_REFERENCES:
        properties = components.get(name, {}).get("properties", {})
        if "assistant_id" in properties:
            properties["assistant_id"] = assistant_reference(properties["assistant_id"], graph_ids, describe_assistant)
    if context is not None:
        _state_maxima(components.get("WorkspaceCreate", {}).get("properties", {}), create_limits(context.settings))
        _state_maxima(components.get("ExecBody", {}).get("properties", {}),
                      {"timeout": context.settings.sandbox_max_exec_timeout_s})
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            for parameter in operation.get("parameters", ()):
                uuid_only = parameter["name"] in UUID_PATH_PARAMETERS or (
                    parameter["name"] == "assistant_id" and path.startswith("/assistants/"))
                if parameter.get("in") == "path" and uuid_only:
                    parameter["schema"] = {**parameter.get("schema", {}), "type": "string", "format": "uuid"}
                elif parameter.get("in") == "path" and parameter["name"] in PATTERNED_PATH_PARAMETERS:
                    parameter["schema"] = {**parameter.get("schema", {}), "type": "string",
                                           "pattern": PATTERNED_PATH_PARAMETERS[parameter["name"]]}
                elif parameter["name"] == "assistant_id":
                    parameter["schema"] = assistant_reference(parameter.get("schema", {}), graph_ids, describe_assistant)
                if parameter["name"] == "assistant_id":
                    parameter["description"] = describe_assistant
            responses = operation.setdefault("responses", {})
            if (method, path) in SSE_OPERATIONS and "200" in responses:
                responses["200"]["content"] = SSE_CONTENT
            if "422" in responses:
                responses["422"] = {"description": "Invalid input; the reason in detail.",
                                    "content": {"application/json": {"schema": _ERROR_REF}}}
            for code, description in COMMON_ERRORS.items():
                responses.setdefault(code, {"description": description,
                                            "content": {"application/json": {"schema": _ERROR_REF}}})
    add_links(schema)
    app.openapi_schema = schema
    return schema


def _state_maxima(properties: dict[str, Any], maxima: dict[str, float]) -> None:
    """Each number gets its ``maximum`` (an optional one's non-null option: pydantic writes ``anyOf``)."""
    for field, maximum in maxima.items():
        schema = properties.get(field, {})
        for option in schema.get("anyOf", [schema]):
            if option.get("type") in ("integer", "number"):
                option["maximum"] = maximum


def install_openapi(app: FastAPI) -> None:
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
