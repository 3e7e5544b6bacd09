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
            if "requestBody" in link or "query.path" in link["parameters"]:  # body and file links (tests below)
                continue
            wanted = {p["name"] for p in target.get("parameters", ()) if p["in"] == "path"}
            assert set(link["parameters"]) == wanted, (method, path, link)
            for name, source in link["parameters"].items():
                assert source == f"$response.body#/{name}" or (
                    source == f"$request.path.{name}" and name in producer_path_parameters), (method, path, link)
            assert target_path != "/threads/{thread_id}/stream" or by_id[link["operationId"]][0] != "get"


def test_body_links_chain_assistants_to_threads_and_runs_and_store_items_to_their_reads() -> None:
    """Ids a path parameter cannot carry: an assistant's into a run's or a thread's body, a store
    item's namespace and key (it has no path) from the request that put it."""
    spec = create_fastapi_app(AppContext(Settings(_env_file=None, graphs=TEST_GRAPHS))).openapi()
    links, by_id = _links()
    assert {("post", "/threads"), ("post", "/runs/wait"), ("post", "/runs")} <= _targets(links, "post", "/assistants", by_id)
    assert {("delete", "/store/items"), ("post", "/store/items/search")} <= _targets(links, "put", "/store/items", by_id)
    schemas = spec["components"]["schemas"]
    body_links = [(producer, link) for producer, found in links.items() for link in found.values() if "requestBody" in link]
    assert len(body_links) >= 8
    for (method, path), link in body_links:
        _, _, target = by_id[link["operationId"]]
        body = target["requestBody"]["content"]["application/json"]["schema"]
        fields = schemas[body["$ref"].rsplit("/", 1)[-1]]["properties"] if "$ref" in body else body["properties"]
        assert set(link["requestBody"]) <= set(fields), (method, path, link)
        for source in link["requestBody"].values():
            source = source[0] if isinstance(source, list) else source
            assert source.startswith("$response.body#/" if method == "post" else "$request.body#/"), (method, path, link)


def test_a_written_file_links_to_its_reads_and_links_sit_on_every_success_answer() -> None:
    """A file has no id: its workspace and path, from the request that wrote it, name it. A create
    answering 201 (and 200 when it existed) carries its links on both answers."""
    spec = create_fastapi_app(AppContext(Settings(_env_file=None, graphs=TEST_GRAPHS))).openapi()
    links, by_id = _links()
    files = "/workspaces/{workspace_id}/files"
    assert {("get", f"{files}/content"), ("get", files), ("delete", files)} <= _targets(
        links, "put", f"{files}/content", by_id)
    for link in links[("put", f"{files}/content")].values():
        target = by_id[link["operationId"]][2]
        parameters = {f"{p['in']}.{p['name']}" for p in target["parameters"]}
        assert set(link["parameters"]) <= parameters and link["parameters"]["query.path"] == "$request.query.path"
    create = spec["paths"]["/workspaces"]["post"]["responses"]
    assert create["201"]["links"] == create["200"]["links"] and "exec_command_workspaces__workspace_id__exec_post" in \
        {link["operationId"] for link in create["201"]["links"].values()}
