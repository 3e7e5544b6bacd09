"""A ``ray.util.metrics`` backend for the metrics facade, installed in every actor process.

Figures recorded through ``quadracode_ray.metrics`` inside actors (fabric, sandboxes, run
executors) then reach each Ray node's metrics agent, hence the Ray dashboard's Prometheus and
the API's ``/metrics``; outside Ray (tests of pure logic) the facade's default stays. It lives in
the core, beside the facade, so that every layer's actors can install it.
"""

from __future__ import annotations

from collections.abc import Sequence

from quadracode_ray import metrics


class _RayMetric:
    def __init__(self, metric, tag_keys: Sequence[str]):
        self._metric, self._tag_keys = metric, tuple(tag_keys)

    def _tags(self, tags: dict[str, str] | None) -> dict[str, str] | None:
        if not self._tag_keys:
            return None
        tags = tags or {}
        unknown = set(tags) - set(self._tag_keys)
        if unknown:
            raise ValueError(f"unknown tag keys {sorted(unknown)}; declared {list(self._tag_keys)}")
        return {key: str(tags.get(key, "")) for key in self._tag_keys}

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        if value > 0:  # Ray counters refuse zero increments
            self._metric.inc(value, tags=self._tags(tags))

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._metric.set(value, tags=self._tags(tags))

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._metric.observe(value, tags=self._tags(tags))


class RayMetricsBackend:
    def counter(self, name, description, tag_keys):
        from ray.util.metrics import Counter

        return _RayMetric(Counter(name, description, tag_keys=tuple(tag_keys)), tag_keys)

    def gauge(self, name, description, tag_keys):
        from ray.util.metrics import Gauge

        return _RayMetric(Gauge(name, description, tag_keys=tuple(tag_keys)), tag_keys)

    def histogram(self, name, description, tag_keys, boundaries):
        from ray.util.metrics import Histogram

        return _RayMetric(Histogram(name, description, boundaries=list(boundaries), tag_keys=tuple(tag_keys)), tag_keys)


_installed = False


def install_ray_metrics() -> None:
    """Make this actor process record through Ray (idempotent)."""
    global _installed
    if not _installed:
        metrics.set_backend(RayMetricsBackend())
        _installed = True
