"""The OpenAPI document says, wherever the API takes an assistant, that a UUID or a registered graph's
name is accepted (pure: the FastAPI app built without Ray or a database)."""

from __future__ import annotations

import re

from quadracode_ray.config import Settings
from serve_app.asgi import create_fastapi_app
from serve_app.context import AppContext
from tests.api.graphs import TEST_GRAPHS

METHODS = ("get", "put", "post", "delete", "patch")


def _spec() -> dict:
    return create_fastapi_app(AppContext(Settings(_env_file=None, graphs=TEST_GRAPHS))).openapi()


def _schemas_under(node: object, components: dict, seen: set[str]) -> set[str]:
    for name in re.findall(r"#/components/schemas/(\w+)", repr(node)):
        if name not in seen:
            seen.add(name)
            _schemas_under(components.get(name, {}), components, seen)
    return seen


def test_every_assistant_reference_is_described_as_a_uuid_or_a_graph_name() -> None:
    spec = _spec()
    components = spec["components"]["schemas"]
    taking, undescribed = set(), set()
    for path, item in spec["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            descriptions = [p.get("description", "") for p in operation.get("parameters", ())
                            if p["name"] == "assistant_id"]
            for name in _schemas_under(operation.get("requestBody", {}), components, set()) - {"AssistantCreate"}:
                field = components[name].get("properties", {}).get("assistant_id")
                if field is not None:
                    descriptions.append(field.get("description", ""))
            if descriptions:
                taking.add(f"{method} {path}")
            if any("UUID or graph name" not in text or "echo" not in text for text in descriptions):
                undescribed.add(f"{method} {path}")
    assert len(taking) >= 20, sorted(taking)  # runs, crons, assistants, A2A
    assert not undescribed, sorted(undescribed)
    assert "generated" in components["AssistantCreate"]["properties"]["assistant_id"]["description"]


def test_an_assistant_reference_admits_a_uuid_or_a_graph_name_and_nothing_else() -> None:
    """So a fuzzer's generated runs and crons name an assistant that exists (bench/reports/fuzz.md:
    most of them bounced off a 404 while the schema said only 'a string')."""
    import jsonschema

    spec = _spec()
    components = spec["components"]["schemas"]
    fields = {name: components[name]["properties"]["assistant_id"]
              for name in ("RunCreate", "RunBatchItem", "CronCreate", "ThreadCronCreate", "CronSearch", "CronCount")}
    fields |= {f"{method} {path}": parameter["schema"] for path, item in spec["paths"].items() for method in METHODS
               for parameter in item.get(method, {}).get("parameters", ())
               if parameter["name"] == "assistant_id" and not path.startswith("/assistants/")}
    assert len(fields) >= 9, sorted(fields)
    for where, schema in fields.items():
        for good in ("echo", "orchestrator", "0b5d5a3e-8f43-4a6e-9a43-6d3c8f1f2a10"):
            jsonschema.validate(good, schema, format_checker=jsonschema.FormatChecker())
        for bad in ("", "no-such-graph", "0b5d5a3e"):
            try:
                jsonschema.validate(bad, schema, format_checker=jsonschema.FormatChecker())
            except jsonschema.ValidationError:
                continue
            raise AssertionError(f"{where} admits {bad!r}: {schema}")
    assert {"type": "null"} in fields["CronSearch"]["anyOf"]  # optional stays optional
