"""/openapi.json and /docs of the real Serve app: a spec a client generator can use."""

from __future__ import annotations

import httpx
import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def spec(api_url: str) -> dict:
    response = httpx.get(f"{api_url}/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def test_spec_is_openapi_3_1_with_valid_json_schemas(spec: dict) -> None:
    assert spec["openapi"].startswith("3.1")
    assert spec["info"]["title"] and spec["info"]["version"]
    for name, schema in spec["components"]["schemas"].items():
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            pytest.fail(f"schema {name} is not valid JSON Schema: {exc.message}")


def test_every_operation_has_a_tag_a_summary_and_a_unique_id(spec: dict) -> None:
    ids = []
    for method, path, operation in operations(spec):
        assert operation.get("tags"), f"{method.upper()} {path} has no tag"
        assert operation.get("summary"), f"{method.upper()} {path} has no summary"
        ids.append(operation["operationId"])
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("method, path, tag", [
    ("put", "/store/items", "Store"), ("get", "/store/items", "Store"), ("delete", "/store/items", "Store"),
    ("post", "/store/items/search", "Store"), ("post", "/store/namespaces", "Store"),
    ("post", "/runs/crons", "Crons"), ("post", "/threads/{thread_id}/runs/crons", "Crons"),
    ("post", "/runs/crons/search", "Crons"), ("post", "/runs/crons/count", "Crons"),
    ("get", "/runs/crons/{cron_id}", "Crons"), ("patch", "/runs/crons/{cron_id}", "Crons"),
    ("delete", "/runs/crons/{cron_id}", "Crons"),
    ("post", "/mcp", "MCP"), ("post", "/a2a/{assistant_id}", "A2A"),
    ("get", "/.well-known/agent-card.json", "A2A"), ("get", "/metrics", "System"),
])
def test_owned_routes_are_documented_with_models(spec: dict, method: str, path: str, tag: str) -> None:
    operation = spec["paths"][path][method]
    assert operation["tags"] == [tag]
    if method in ("post", "put", "patch") and path not in ("/runs/crons/count",):
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body.get("$ref") or body.get("properties") or body.get("type"), f"{path}: undocumented body"


def test_request_models_name_their_fields(spec: dict) -> None:
    schemas = spec["components"]["schemas"]
    assert {"schedule", "assistant_id", "end_time", "timezone"} <= set(schemas["CronCreate"]["properties"])
    assert schemas["CronCreate"]["additionalProperties"] is False
    assert {"namespace", "key", "value", "ttl", "index"} <= set(schemas["StorePutRequest"]["properties"])
    assert {"cron_id", "next_run_date", "payload"} <= set(schemas["Cron"]["properties"])


def test_docs_page_loads_the_spec(api_url: str) -> None:
    page = httpx.get(f"{api_url}/docs")
    assert page.status_code == 200
    assert "openapi.json" in page.text
