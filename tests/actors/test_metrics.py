"""The ray.util.metrics backend the fabric's actors install for quadracode_ray.metrics."""

from __future__ import annotations

import asyncio
import time

import ray
from prometheus_client.parser import text_string_to_metric_families

from serve_app.metrics_cluster import cluster_metrics_text
from tests.polling import eventually


@ray.remote(num_cpus=0)
def record_through_ray() -> dict:
    from quadracode_ray import metrics
    from quadracode_ray.ray_metrics import install_ray_metrics

    install_ray_metrics()
    counter = metrics.counter("fabric_test_total", "test counter", ("kind",))
    gauge = metrics.gauge("fabric_test_gauge", "test gauge", ("source",))
    histogram = metrics.histogram("fabric_test_seconds", "test histogram")
    counter.inc(tags={"kind": "a"})
    counter.inc(0)  # Ray refuses zero increments; the backend skips them
    gauge.set(3, tags={"source": "fleet"})
    histogram.observe(0.01)
    try:
        counter.inc(tags={"nope": "x"})
        unknown_tag = "accepted"
    except ValueError as exc:
        unknown_tag = str(exc)
    try:
        metrics.counter("fabric_test_reserved_total", "test counter", ("installation",))
        reserved = "accepted"
    except ValueError as exc:
        reserved = str(exc)
    return {"types": sorted({type(m).__module__ + "." + type(m).__name__ for m in (counter, gauge, histogram)}),
            "same": metrics.counter("fabric_test_total", "again", ("kind",)) is counter, "unknown_tag": unknown_tag,
            "reserved": reserved}


async def test_actor_metrics_record_through_ray(ray_cluster):
    outcome = await record_through_ray.remote()
    assert outcome["types"] == ["quadracode_ray.ray_metrics._RayGauge", "quadracode_ray.ray_metrics._RayMetric"]
    assert outcome["same"] is True
    assert "unknown tag keys" in outcome["unknown_tag"]
    assert "set by the backend itself" in outcome["reserved"]


@ray.remote(num_cpus=0)
class GaugeSetOnce:
    def __init__(self, name: str, installation: str):
        from quadracode_ray import metrics
        from quadracode_ray.ray_metrics import install_ray_metrics, refresh_interval_s

        install_ray_metrics(installation)
        metrics.gauge(name, "a gauge set once", ("source",)).set(7, tags={"source": "once"})
        self.refresh_s = refresh_interval_s()

    def refresh_interval(self) -> float:
        return self.refresh_s


async def _gauge_value(name: str, installation: str) -> float | None:
    text = (await cluster_metrics_text(installation)).decode()
    values = [sample.value for family in text_string_to_metric_families(text) for sample in family.samples
              if sample.name == f"ray_quadracode_{name}" and sample.labels.get("source") == "once"]
    return values[0] if values else None


async def test_a_gauge_set_once_stays_exported_while_its_actor_lives(ray_cluster):
    name, installation = f"gauge_once_{time.monotonic_ns()}", f"i{time.monotonic_ns()}-"
    actor = GaugeSetOnce.remote(name, installation)
    refresh_s = await actor.refresh_interval.remote()
    assert refresh_s == 0.5  # half of the test cluster's 1 s report interval
    assert await eventually(lambda: _gauge_value(name, installation), timeout=30,
                            what="the gauge's first export") == 7
    assert await _gauge_value(name, "") is None  # another installation's /metrics does not show it
    # Ray's agent forgets a gauge not set again within 2 report intervals (2 s here): over 3 times
    # that, the scrapes must still show it (without the refresh, all of those after ~2 s miss it;
    # two misses are allowed for a late export on a loaded machine). The passage of time is what
    # this test is about; on a loaded machine a scrape can take a while, so the watch goes on
    # until it has both its 6 s and its 8 scrapes.
    watched_until, seen = time.monotonic() + 6, []
    while time.monotonic() < watched_until or len(seen) < 8:
        seen.append(await _gauge_value(name, installation))
        await asyncio.sleep(0.5)
    assert seen.count(None) <= 2 and set(seen) <= {7, None}, seen
    ray.kill(actor)
