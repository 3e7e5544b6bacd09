"""The ray.util.metrics backend the fabric's actors install for quadracode_ray.metrics."""

from __future__ import annotations

import ray


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
    return {"types": sorted({type(m).__module__ + "." + type(m).__name__ for m in (counter, gauge, histogram)}),
            "same": metrics.counter("fabric_test_total", "again", ("kind",)) is counter, "unknown_tag": unknown_tag}


async def test_actor_metrics_record_through_ray(ray_cluster):
    outcome = await record_through_ray.remote()
    assert outcome["types"] == ["quadracode_ray.ray_metrics._RayMetric"]
    assert outcome["same"] is True
    assert "unknown tag keys" in outcome["unknown_tag"]
