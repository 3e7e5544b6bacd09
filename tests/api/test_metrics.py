"""/metrics over real HTTP: Prometheus text with request counts and latency per route template,
and the actors' figures (here the run executors' API runs) read from Ray's metrics agents."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import undeploy
from tests.api.test_auth import deploy_with_extras
from tests.polling import eventually


@pytest.fixture(scope="module")
def metered_url(serve_http_port: int, database_url: str, tmp_path_factory) -> Iterator[str]:

    app_name = f"metered-{uuid.uuid4().hex[:6]}"
    yield deploy_with_extras(app_name, f"/{app_name}", f"http://127.0.0.1:{serve_http_port}", {
        "database_url": database_url, "data_dir": str(tmp_path_factory.mktemp("metered")),
        "graphs": {METERED_GRAPH: "tests.api.graphs:echo"},
    })
    undeploy(app_name, database_url)


# A graph name of this module alone: other modules' runs (same Ray, same metrics agent) never count.
METERED_GRAPH = f"metered_{uuid.uuid4().hex[:8]}"


def _samples(url: str, **params: str) -> dict[tuple[str, frozenset], float]:
    response = httpx.get(f"{url}/metrics", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return _parse(response.text)


def _parse(text: str) -> dict[tuple[str, frozenset], float]:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_requests_are_counted_and_timed_per_route_template(metered_url: str) -> None:
    for _ in range(3):
        assert httpx.get(f"{metered_url}/ok").status_code == 200
    item = {"namespace": ["m"], "key": uuid.uuid4().hex, "value": {"v": 1}}
    assert httpx.put(f"{metered_url}/store/items", json=item).status_code == 204
    assert httpx.get(f"{metered_url}/store/items", params={"namespace": "m..", "key": "k"}).status_code == 422
    assert httpx.get(f"{metered_url}/nope/{uuid.uuid4().hex}").status_code == 404

    samples = _samples(metered_url)
    ok = frozenset({("method", "GET"), ("route", "/ok"), ("status", "200")})
    assert samples[("quadracode_http_requests_total", ok)] >= 3
    assert samples[("quadracode_http_requests_total",
                    frozenset({("method", "PUT"), ("route", "/store/items"), ("status", "204")}))] == 1
    assert samples[("quadracode_http_requests_total",
                    frozenset({("method", "GET"), ("route", "/store/items"), ("status", "422")}))] == 1
    # Unknown paths share one label value, so random ids cannot grow the series without bound.
    assert samples[("quadracode_http_requests_total",
                    frozenset({("method", "GET"), ("route", "<unmatched>"), ("status", "404")}))] == 1
    assert samples[("quadracode_http_request_duration_seconds_count",
                    frozenset({("method", "GET"), ("route", "/ok")}))] >= 3
    assert samples[("quadracode_http_request_duration_seconds_sum",
                    frozenset({("method", "GET"), ("route", "/ok")}))] > 0
    assert not any("/nope/" in dict(labels).get("route", "") for _, labels in samples)


def test_openapi_lists_metrics_and_store_routes(metered_url: str) -> None:
    spec = httpx.get(f"{metered_url}/openapi.json").json()
    assert "/metrics" in spec["paths"]
    assert spec["paths"]["/store/items/search"]["post"]["tags"] == ["Store"]
    assert httpx.get(f"{metered_url}/docs").status_code == 200


def _api_runs(samples: dict[tuple[str, frozenset], float], status: str) -> float:
    """API runs of this module's graph, summed over the run executors (each labels its own)."""
    return sum(value for (name, labels), value in samples.items()
               if name == "ray_quadracode_api_runs_total"
               and {("graph", METERED_GRAPH), ("status", status)} <= labels)


async def test_the_actors_figures_are_served_beside_the_replicas(metered_url: str) -> None:
    from langgraph_sdk import get_client

    client = get_client(url=metered_url)
    for items in (["x"], ["y"]):
        assert await client.runs.wait(None, METERED_GRAPH, input={"items": items}) == {"items": [*items, "a"]}
    with pytest.raises(Exception, match="boom"):  # the SDK raises a plain Exception for a failed run
        await client.runs.wait(None, METERED_GRAPH, input={"items": [], "fail": True})

    async def settled() -> dict | None:
        async with httpx.AsyncClient(timeout=10) as http:
            samples = _parse((await http.get(f"{metered_url}/metrics")).text)
        timed = any(name == "ray_quadracode_api_run_seconds_count" and ("graph", METERED_GRAPH) in labels
                    for name, labels in samples)
        return samples if _api_runs(samples, "success") >= 2 and _api_runs(samples, "error") >= 1 and timed else None

    # Ray's agents publish what actors recorded every second in the test cluster, each series on
    # its own schedule (the counter can be there before the histogram): poll for all of them.
    samples = await eventually(settled, timeout=30, what="the run executors' figures on /metrics", interval=0.25)
    assert _api_runs(samples, "success") == 2 and _api_runs(samples, "error") == 1
    assert samples[("quadracode_metrics_unreachable_nodes", frozenset())] == 0
    # Asked for the replica's own figures only, the actors' are left out.
    assert not any(name.startswith("ray_quadracode_") for name, _ in _samples(metered_url, actors="false"))
