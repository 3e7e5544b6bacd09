"""A metrics facade: core code records, a backend exports.

Core modules (providers, graphs, persistence) declare metrics here without importing Ray.
The default backend is ``prometheus_client`` (the API replica's own figures on ``/metrics``);
every actor process installs the ``ray.util.metrics`` backend of ``quadracode_ray.ray_metrics``,
so its figures reach Ray's metrics agents (the dashboard's Prometheus, and ``/metrics`` as
``ray_quadracode_*``). Declaring the same metric twice returns the same object.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import prometheus_client

PREFIX = "quadracode_"


class Counter(Protocol):
    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None: ...


class Gauge(Protocol):
    def set(self, value: float, tags: dict[str, str] | None = None) -> None: ...


class Histogram(Protocol):
    def observe(self, value: float, tags: dict[str, str] | None = None) -> None: ...


class MetricsBackend(Protocol):
    def counter(self, name: str, description: str, tag_keys: Sequence[str]) -> Counter: ...

    def gauge(self, name: str, description: str, tag_keys: Sequence[str]) -> Gauge: ...

    def histogram(self, name: str, description: str, tag_keys: Sequence[str], boundaries: Sequence[float]) -> Histogram: ...


class _PromMetric:
    def __init__(self, metric, tag_keys: Sequence[str], method: str):
        self._metric, self._tag_keys, self._method = metric, tuple(tag_keys), method

    def _child(self, tags: dict[str, str] | None):
        if not self._tag_keys:
            return self._metric
        tags = tags or {}
        unknown = set(tags) - set(self._tag_keys)
        if unknown:
            raise ValueError(f"unknown tag keys {sorted(unknown)}; declared {list(self._tag_keys)}")
        return self._metric.labels(**{key: tags.get(key, "") for key in self._tag_keys})

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self._child(tags).inc(value)

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._child(tags).set(value)

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._child(tags).observe(value)


class PrometheusBackend:
    def __init__(self, registry: prometheus_client.CollectorRegistry | None = None):
        self.registry = registry or prometheus_client.REGISTRY

    def counter(self, name, description, tag_keys):
        return _PromMetric(prometheus_client.Counter(name, description, list(tag_keys), registry=self.registry), tag_keys, "inc")

    def gauge(self, name, description, tag_keys):
        return _PromMetric(prometheus_client.Gauge(name, description, list(tag_keys), registry=self.registry), tag_keys, "set")

    def histogram(self, name, description, tag_keys, boundaries):
        return _PromMetric(prometheus_client.Histogram(name, description, list(tag_keys), buckets=list(boundaries),
                                                       registry=self.registry), tag_keys, "observe")


_lock = threading.Lock()
_backend: MetricsBackend = PrometheusBackend()
_declared: dict[str, object] = {}

DEFAULT_BOUNDARIES = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def set_backend(backend: MetricsBackend) -> None:
    """Install a backend (before metrics are declared in this process)."""
    global _backend
    with _lock:
        _backend = backend
        _declared.clear()


def _declare(kind: str, name: str, description: str, tag_keys: Sequence[str], *extra):
    full = name if name.startswith(PREFIX) else PREFIX + name
    with _lock:
        if full not in _declared:
            _declared[full] = getattr(_backend, kind)(full, description, tuple(tag_keys), *extra)
        return _declared[full]


def counter(name: str, description: str, tag_keys: Sequence[str] = ()) -> Counter:
    return _declare("counter", name, description, tag_keys)


def gauge(name: str, description: str, tag_keys: Sequence[str] = ()) -> Gauge:
    return _declare("gauge", name, description, tag_keys)


def histogram(name: str, description: str, tag_keys: Sequence[str] = (),
              boundaries: Sequence[float] = DEFAULT_BOUNDARIES) -> Histogram:
    return _declare("histogram", name, description, tag_keys, tuple(boundaries))
