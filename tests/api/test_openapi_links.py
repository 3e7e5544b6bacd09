"""The OpenAPI document links each operation answering a record to the operations taking its id
(pure: the FastAPI app built without Ray or a database), so a stateful fuzzer chains real ids."""

from __future__ import annotations

from quadracode_ray.config import Settings
from serve_app.asgi import create_fastapi_app
from serve_app.context import AppContext
from tests.api.graphs import TEST_GRAPHS

METHODS = ("get", "put", "post", "delete", "patch")


def _links() -> tuple[dict, dict[str, tuple[str, str, dict]]]:
    spec = create_fastapi_app(AppContext(Settings(_env_file=None, graphs=TEST_GRAPHS))).openapi()
    by_id = {op["operationId"]: (method, path, op) for path, item in spec["paths"].items()
             for method, op in item.items() if method in METHODS}
    links = {(method, path): response["links"] for path, item in spec["paths"].items()
             for method, op in item.items() if method in METHODS
             for response in op.get("responses", {}).values() if "links" in response}
    return links, by_id


def _targets(links: dict, method: str, path: str, by_id: dict) -> set[tuple[str, str]]:
    return {by_id[link["operationId"]][:2] for link in links.get((method, path), {}).values()}


def test_creating_operations_link_to_the_operations_taking_their_ids() -> None:
    links, by_id = _links()
    assert ("get", "/threads/{thread_id}") in _targets(links, "post", "/threads", by_id)
    assert ("get", "/threads/{thread_id}/runs/{run_id}") in _targets(links, "post", "/threads/{thread_id}/runs", by_id)
    assert ("delete", "/assistants/{assistant_id}") in _targets(links, "post", "/assistants", by_id)
    assert ("get", "/runs/crons/{cron_id}") in _targets(links, "post", "/runs/crons", by_id)
    assert ("post", "/workspaces/{workspace_id}/exec") in _targets(links, "post", "/workspaces", by_id)  # operator API
    assert sum(len(found) for found in links.values()) >= 100


def test_every_link_fills_exactly_its_targets_path_parameters_and_none_leads_into_an_endless_stream() -> None:
    links, by_id = _links()
    for (method, path), found in links.items():
        producer_path_parameters = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for link in found.values():
            _, target_path, target = by_id[link["operationId"]]
            wanted = {p["name"] for p in target.get("parameters", ()) if p["in"] == "path"}
            assert set(link["parameters"]) == wanted, (method, path, link)
            for name, source in link["parameters"].items():
                assert source == f"$response.body#/{name}" or (
                    source == f"$request.path.{name}" and name in producer_path_parameters), (method, path, link)
            assert target_path != "/threads/{thread_id}/stream" or by_id[link["operationId"]][0] != "get"
