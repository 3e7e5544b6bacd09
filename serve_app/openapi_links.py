"""OpenAPI links: which operation's answer names the record another operation takes.

A stateful fuzzer (Schemathesis's stateful phase, tests/reliability/test_fuzz_openapi.py) and any
client generator read them to chain calls with real ids: ``POST /threads`` answers a
``thread_id`` that ``GET /threads/{thread_id}`` takes, and so on. They are derived, not listed:
an operation that creates or returns one record (a POST or PUT answering a JSON object) links
to every operation whose path parameters that answer's fields (and the producer's own path
parameters) fill, at least one of them from the answer. Links a derivation cannot find are
listed: ids that go into a request body (BODY_LINKS), and records named by the request that
wrote them, a workspace's files (REQUEST_LINKS). Every link is on each of its producer's success
answers (a create's 201 and the 200 of its idempotent repeat).
"""

from __future__ import annotations

from typing import Any

PRODUCER_METHODS = ("post", "put")
CONSUMER_METHODS = ("get", "put", "post", "delete", "patch")
# The LangGraph API's records are answered without a documented schema (the official server's
# shapes, free-form): the fields each creating operation answers, as the routes return them.
RECORD_ANSWERS: dict[tuple[str, str], set[str]] = {
    ("post", "/threads"): {"thread_id"},
    ("post", "/threads/{thread_id}/copy"): {"thread_id"},
    ("post", "/assistants"): {"assistant_id"},
    ("post", "/threads/{thread_id}/runs"): {"run_id", "thread_id", "assistant_id"},
    ("post", "/runs"): {"run_id", "thread_id", "assistant_id"},
    ("post", "/runs/crons"): {"cron_id", "assistant_id"},
    ("post", "/threads/{thread_id}/runs/crons"): {"cron_id", "thread_id", "assistant_id"},
}
# Links a path parameter cannot express: the record's id goes into the next request's body (an
# assistant's runs and threads), or the request's own body names the record (the store's items,
# which have no path of their own). (producer method, path) -> [(consumer method, path, requestBody)].
BODY_LINKS: dict[tuple[str, str], list[tuple[str, str, dict[str, Any]]]] = {
    ("post", "/assistants"): [
        ("post", "/threads", {"graph_id": "$response.body#/graph_id"}),
        ("post", "/runs/wait", {"assistant_id": "$response.body#/assistant_id"}),
        ("post", "/runs", {"assistant_id": "$response.body#/assistant_id"}),
        ("post", "/assistants/search", {"graph_id": "$response.body#/graph_id"}),
    ],
    ("post", "/threads"): [
        ("post", "/threads/search", {"ids": ["$response.body#/thread_id"]}),
    ],
    ("put", "/store/items"): [
        ("delete", "/store/items", {"namespace": "$request.body#/namespace", "key": "$request.body#/key"}),
        ("post", "/store/items/search", {"namespace_prefix": "$request.body#/namespace"}),
        ("post", "/store/namespaces", {"prefix": "$request.body#/namespace"}),
    ],
}
# Records with no id of their own, named by the request that wrote them: a workspace's file or
# folder, by its workspace and path. (producer method, path) -> [(consumer method, path)], each
# consumer taking the producer's workspace_id and path.
_FILES = "/workspaces/{workspace_id}/files"
REQUEST_LINKS: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("put", f"{_FILES}/content"): [("get", f"{_FILES}/content"), ("get", _FILES), ("delete", _FILES)],
    ("put", "/workspaces/{workspace_id}/archive"): [("get", "/workspaces/{workspace_id}/archive"), ("get", _FILES)],
}
REQUEST_LINK_PARAMETERS = {"path.workspace_id": "$request.path.workspace_id", "query.path": "$request.query.path"}
ENDLESS = frozenset({("get", "/threads/{thread_id}/stream")})
"""Live streams that end only when the client goes: no link leads a fuzzer into one."""


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
    return schema


def _answer_fields(operation: dict[str, Any], components: dict[str, Any]) -> set[str]:
    for code in ("200", "201"):
        content = operation.get("responses", {}).get(code, {}).get("content", {})
        schema = _resolve(content.get("application/json", {}).get("schema", {}), components)
        if schema.get("type") == "object" or "properties" in schema:
            return set(schema.get("properties", {}))
    return set()


def _path_parameters(operation: dict[str, Any]) -> set[str]:
    return {p["name"] for p in operation.get("parameters", ()) if p.get("in") == "path"}


def add_links(schema: dict[str, Any]) -> int:
    """Add the links to ``schema`` in place; how many were added."""
    components = schema.get("components", {}).get("schemas", {})
    operations = [(path, method, item[method]) for path, item in schema.get("paths", {}).items()
                  for method in CONSUMER_METHODS if method in item]
    added = 0
    for path, method, producer in operations:
        if method not in PRODUCER_METHODS:
            continue
        answered = _answer_fields(producer, components) or RECORD_ANSWERS.get((method, path), set())
        known = _path_parameters(producer)
        for target_path, target_method, consumer in operations:
            needed = _path_parameters(consumer)
            if (not needed or consumer is producer or (target_method, target_path) in ENDLESS
                    or not needed & answered or not needed <= answered | known or "operationId" not in consumer):
                continue
            parameters = {name: f"$response.body#/{name}" if name in answered else f"$request.path.{name}"
                          for name in sorted(needed)}
            added += _link(producer, consumer, {"parameters": parameters}, ("200", "201"))
    return added + _add_listed_links(schema)


def _link(producer: dict[str, Any], consumer: dict[str, Any], fields: dict[str, Any], codes: tuple[str, ...]) -> int:
    """Link ``producer`` to ``consumer`` on each of its success answers among ``codes`` (POST
    /workspaces answers 201 when it creates and 200 when the workspace existed, and both name it);
    1 if it has any, else 0."""
    answers = [producer["responses"][code] for code in codes if code in producer.get("responses", {})]
    for answer in answers:
        answer.setdefault("links", {})[consumer["operationId"]] = {"operationId": consumer["operationId"], **fields}
    return 1 if answers else 0


def _add_listed_links(schema: dict[str, Any]) -> int:
    """BODY_LINKS and REQUEST_LINKS, where both ends are in the schema."""
    listed: dict[tuple[str, str], list[tuple[str, str, dict[str, Any]]]] = {}
    for producer_key, body_targets in BODY_LINKS.items():
        listed.setdefault(producer_key, []).extend(
            (method, path, {"requestBody": body}) for method, path, body in body_targets)
    for producer_key, request_targets in REQUEST_LINKS.items():
        listed.setdefault(producer_key, []).extend(
            (method, path, {"parameters": dict(REQUEST_LINK_PARAMETERS)}) for method, path in request_targets)
    added = 0
    paths = schema.get("paths", {})
    for (method, path), targets in listed.items():
        producer = paths.get(path, {}).get(method)
        if producer is None:
            continue
        for target_method, target_path, fields in targets:
            consumer = paths.get(target_path, {}).get(target_method)
            if consumer is None or "operationId" not in consumer:
                continue
            added += _link(producer, consumer, fields, ("200", "201", "204"))
    return added
