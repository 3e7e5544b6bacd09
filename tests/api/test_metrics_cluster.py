"""How ``/metrics`` gathers the actors' figures from Ray's per-node metrics agents, without Ray:
the texts below are what a Ray 2 metrics agent exports for ``ray.util.metrics`` figures."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serve_app.metrics_cluster import MetricsSource, cluster_metrics_text, merge_families

NODE_A = """\
# HELP ray_quadracode_agents_alive Agent actors alive.
# TYPE ray_quadracode_agents_alive gauge
ray_quadracode_agents_alive{NodeAddress="10.0.0.1",source="fleet",WorkerId="aa"} 3.0
# HELP ray_quadracode_api_runs_total Runs of the LangGraph API.
# TYPE ray_quadracode_api_runs_total counter
ray_quadracode_api_runs_total{NodeAddress="10.0.0.1",graph="chat",status="success"} 7.0
ray_quadracode_api_runs_total{NodeAddress="10.0.0.1",graph="chat",installation="other-",status="success"} 40.0
# HELP ray_node_cpu_utilization Ray's own node figure, not ours.
# TYPE ray_node_cpu_utilization gauge
ray_node_cpu_utilization{NodeAddress="10.0.0.1"} 12.5
"""

NODE_B = """\
# HELP ray_quadracode_api_runs_total Runs of the LangGraph API.
# TYPE ray_quadracode_api_runs_total counter
ray_quadracode_api_runs_total{NodeAddress="10.0.0.2",graph="chat",status="error"} 2.0
# HELP ray_quadracode_sandbox_operation_seconds Durations.
# TYPE ray_quadracode_sandbox_operation_seconds histogram
ray_quadracode_sandbox_operation_seconds_bucket{NodeAddress="10.0.0.2",operation="exec",le="0.01"} 1.0
ray_quadracode_sandbox_operation_seconds_bucket{NodeAddress="10.0.0.2",operation="exec",le="+Inf"} 2.0
ray_quadracode_sandbox_operation_seconds_count{NodeAddress="10.0.0.2",operation="exec"} 2.0
ray_quadracode_sandbox_operation_seconds_sum{NodeAddress="10.0.0.2",operation="exec"} 0.5
"""


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_families_of_every_node_merge_into_one_family_each_and_only_ours_are_kept() -> None:
    families, unreadable = merge_families([NODE_A, NODE_B], installation="")
    assert unreadable == 0
    assert [family.name for family in families] == [
        "ray_quadracode_agents_alive", "ray_quadracode_api_runs", "ray_quadracode_sandbox_operation_seconds"]
    runs = families[1]
    assert runs.type == "counter"
    assert sorted(sample.labels["status"] for sample in runs.samples) == ["error", "success"]


def test_a_node_with_unreadable_text_is_skipped_and_counted_and_the_others_kept() -> None:
    families, unreadable = merge_families([NODE_A, "ray_quadracode_x{broken 1\n"])
    assert unreadable == 1
    assert "ray_quadracode_api_runs" in [family.name for family in families]


class _Agent(BaseHTTPRequestHandler):
    texts: dict[str, str] = {"/a": NODE_A, "/b": NODE_B}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = self.texts[self.path].encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def agents_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Agent)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_the_rendered_text_has_every_node_and_counts_the_silent_ones(agents_url: str) -> None:
    sources = [MetricsSource("a", f"{agents_url}/a"), MetricsSource("b", f"{agents_url}/b"),
               MetricsSource("gone", f"http://127.0.0.1:{_closed_port()}/metrics"),
               MetricsSource("malformed", "http://[::1:99999/metrics")]  # not an HTTP error: httpx.InvalidURL
    text = (await cluster_metrics_text("", sources, timeout_s=2)).decode()
    samples = _samples(text)  # the text parses: one HELP/TYPE per family, whatever the nodes
    assert samples[("ray_quadracode_api_runs_total", frozenset(
        {("NodeAddress", "10.0.0.1"), ("graph", "chat"), ("status", "success")}))] == 7
    assert samples[("ray_quadracode_api_runs_total", frozenset(
        {("NodeAddress", "10.0.0.2"), ("graph", "chat"), ("status", "error")}))] == 2
    assert samples[("ray_quadracode_sandbox_operation_seconds_count", frozenset(
        {("NodeAddress", "10.0.0.2"), ("operation", "exec")}))] == 2
    assert samples[("quadracode_metrics_unreachable_nodes", frozenset())] == 2
    assert text.count("# TYPE ray_quadracode_api_runs_total counter") == 1
    assert "ray_node_cpu_utilization" not in text
    assert 'installation="other-"' not in text  # another installation's series on the same agents


def test_only_the_given_installations_series_are_kept() -> None:
    families, _ = merge_families([NODE_A, NODE_B], installation="other-")
    assert [(family.name, [sample.value for sample in family.samples]) for family in families] == [
        ("ray_quadracode_api_runs", [40.0])]
    everything, _ = merge_families([NODE_A, NODE_B])
    assert sum(len(family.samples) for family in everything) == 8  # no installation given: all of them


async def test_outside_ray_there_is_nothing_to_add() -> None:
    assert await cluster_metrics_text("", []) == b""
