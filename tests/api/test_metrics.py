"""/metrics over real HTTP: Prometheus text with request counts and latency per route template."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import undeploy
from tests.api.test_auth import deploy_with_extras


@pytest.fixture(scope="module")
def metered_url(serve_http_port: int, database_url: str, tmp_path_factory) -> Iterator[str]:

    app_name = f"metered-{uuid.uuid4().hex[:6]}"
    yield deploy_with_extras(app_name, f"/{app_name}", f"http://127.0.0.1:{serve_http_port}", {
        "database_url": database_url, "data_dir": str(tmp_path_factory.mktemp("metered")),
    })
    undeploy(app_name, database_url)


def _samples(url: str) -> dict[tuple[str, frozenset], float]:
    response = httpx.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


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
