"""A ``ray.util.metrics`` backend for the metrics facade, installed in every actor process.

Figures recorded through ``quadracode_ray.metrics`` inside actors (fabric, sandboxes, run
executors) then reach each Ray node's metrics agent, hence the Ray dashboard's Prometheus and
the API's ``/metrics``; outside Ray (tests of pure logic) the facade's default stays. It lives in
the core, beside the facade, so that every layer's actors can install it.

Ray's agents forget a gauge value that was not set again within two report intervals (a dead
worker's gauges must age out), so a gauge set once, such as the agents alive while nothing
changes, would vanish from the export: this backend sets every gauge's last values again each
half report interval, from one daemon thread per process.

Every series carries an ``installation`` label (the installation's actor name prefix), so that
installations sharing one Ray cluster each see their own figures on ``/metrics``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from quadracode_ray import metrics

log = logging.getLogger(__name__)


INSTALLATION_LABEL = "installation"


class _RayMetric:
    def __init__(self, metric, tag_keys: Sequence[str], installation: str):
        self._metric, self._tag_keys, self._installation = metric, tuple(tag_keys), installation

    def _tags(self, tags: dict[str, str] | None) -> dict[str, str]:
        tags = tags or {}
        unknown = set(tags) - set(self._tag_keys)
        if unknown:
            raise ValueError(f"unknown tag keys {sorted(unknown)}; declared {list(self._tag_keys)}")
        return {**{key: str(tags.get(key, "")) for key in self._tag_keys}, INSTALLATION_LABEL: self._installation}

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        if value > 0:  # Ray counters refuse zero increments
            self._metric.inc(value, tags=self._tags(tags))

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._metric.set(value, tags=self._tags(tags))

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._metric.observe(value, tags=self._tags(tags))


class _RayGauge(_RayMetric):
    """A gauge whose last value per tag set is kept and set again by the refresher."""

    def __init__(self, metric, tag_keys: Sequence[str], installation: str):
        super().__init__(metric, tag_keys, installation)
        self._last: dict[tuple[str, ...], tuple[float, dict[str, str]]] = {}  # by tag values
        self._lock = threading.Lock()
        _refresher.add(self)

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        resolved = self._tags(tags)
        with self._lock:
            self._metric.set(value, tags=resolved)
            self._last[tuple(resolved.values())] = (value, resolved)  # keys always in declared order

    def refresh(self) -> None:
        with self._lock:
            for value, tags in self._last.values():
                self._metric.set(value, tags=tags)


class _GaugeRefresher:
    def __init__(self) -> None:
        self._gauges: list[_RayGauge] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def clear(self) -> None:
        """Forget every gauge (the backend was replaced: they would be set again under the old
        installation label forever)."""
        with self._lock:
            self._gauges.clear()

    def add(self, gauge: _RayGauge) -> None:
        with self._lock:
            self._gauges.append(gauge)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="gauge-refresh", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:  # a daemon thread: it lives as long as its process
            time.sleep(refresh_interval_s())
            with self._lock:
                gauges = list(self._gauges)
            for gauge in gauges:
                try:
                    gauge.refresh()
                except Exception:  # a metrics backend must never take its process down
                    log.debug("gauge refresh failed", exc_info=True)


_refresher = _GaugeRefresher()


def refresh_interval_s() -> float:
    """Half of Ray's export cadence: max(metrics_report_interval_ms, 1 s), as its agents count it."""
    try:
        import ray

        interval_ms = ray._config.metrics_report_interval_ms()
    except Exception:  # noqa: BLE001 - outside a Ray worker: Ray's default
        interval_ms = 10_000
    return max(interval_ms, 1000) / 2000


class RayMetricsBackend:
    def __init__(self, installation: str = ""):
        self.installation = installation

    @staticmethod
    def _keys(tag_keys: Sequence[str]) -> tuple[str, ...]:
        if INSTALLATION_LABEL in tag_keys:
            raise ValueError(f"tag key {INSTALLATION_LABEL!r} is set by the backend itself")
        return (*tag_keys, INSTALLATION_LABEL)

    def counter(self, name, description, tag_keys):
        from ray.util.metrics import Counter

        return _RayMetric(Counter(name, description, tag_keys=self._keys(tag_keys)), tag_keys, self.installation)

    def gauge(self, name, description, tag_keys):
        from ray.util.metrics import Gauge

        return _RayGauge(Gauge(name, description, tag_keys=self._keys(tag_keys)), tag_keys, self.installation)

    def histogram(self, name, description, tag_keys, boundaries):
        from ray.util.metrics import Histogram

        return _RayMetric(Histogram(name, description, boundaries=list(boundaries), tag_keys=self._keys(tag_keys)),
                          tag_keys, self.installation)


_installed_for: str | None = None


def install_ray_metrics(installation: str = "") -> None:
    """Make this actor process record through Ray, its series labelled ``installation`` (the
    installation's actor name prefix). Idempotent; a worker process Ray reuses for an actor of
    another installation is switched to that one."""
    global _installed_for
    if _installed_for != installation:
        _refresher.clear()
        metrics.set_backend(RayMetricsBackend(installation))
        _installed_for = installation
