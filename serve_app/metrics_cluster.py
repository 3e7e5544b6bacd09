"""The actors' figures on ``/metrics``: what they record through ``ray.util.metrics``.

Actors (fabric, workspace sandboxes, run executors) record through Ray's backend of the metrics
facade (``quadracode_ray/ray_metrics.py``), and Ray exports those figures from each node's
metrics agent as ``ray_quadracode_*`` families. ``/metrics`` reads the agent of every live node
and serves those families after the replica's own, so one scrape shows the whole system: agents
alive, envelopes, deliveries, tasks, API runs, LLM tokens, sandbox operation durations. Only the
series of this replica's installation are kept (their ``installation`` label is its actor name
prefix): installations sharing a Ray cluster share its metrics agents.

Ray's agents publish what actors recorded every few seconds (``metrics_report_interval_ms``), so
a figure appears here that much after it was recorded.

A node's agent grows with the node's age: it keeps every counter and histogram series a worker
process ever exported, dead workers' included (each series carries the process's ``WorkerId``),
up to OpenTelemetry's 2000 label sets per instrument. Measured with Ray 2.60's recorder: each dead
worker that timed four kinds of sandbox operation adds ~26 KiB and ~5 ms of rendering to every
scrape; one histogram family at the cap is ~14 MB and took 2.3-3 s to render on a loaded 2-core
machine. So an agent is given ``NODE_CONNECT_TIMEOUT_S`` to accept the connection (one that does
not is down) and the scrape ``SCRAPE_BUDGET_S`` as a whole, under Prometheus' default 10 s scrape
timeout. Past the cap, the series of newer workers go to OpenTelemetry's overflow series, which
has no ``installation`` label: their figures are then missing here until the agent restarts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpx
import prometheus_client
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from quadracode_ray.ray_metrics import INSTALLATION_LABEL

log = logging.getLogger(__name__)

FAMILY_PREFIX = "ray_quadracode_"
NODE_CONNECT_TIMEOUT_S = 2.0
SCRAPE_BUDGET_S = 8.0


@dataclass(frozen=True)
class MetricsSource:
    node_id: str
    url: str


def ray_metrics_sources() -> list[MetricsSource]:
    """The metrics agents of the Ray cluster's live nodes (none when this process is outside Ray)."""
    import ray

    if not ray.is_initialized():
        return []
    sources = []
    for node in ray.nodes():
        port = node.get("MetricsExportPort")
        if node.get("Alive") and port:
            host = node["NodeManagerAddress"]
            host = f"[{host}]" if ":" in host else host  # an IPv6 address
            sources.append(MetricsSource(node["NodeID"], f"http://{host}:{port}/metrics"))
    return sources


def _families_of(text: str, prefix: str, installation: str | None) -> list[Metric]:
    # A node's export is mostly Ray's own series (hundreds of KiB): keep our lines before parsing.
    ours = "\n".join(line for line in text.splitlines()
                     if line.startswith((prefix, f"# HELP {prefix}", f"# TYPE {prefix}")))
    families = list(text_string_to_metric_families(ours + "\n")) if ours else []
    if installation is not None:
        for family in families:
            family.samples = [sample for sample in family.samples
                              if sample.labels.get(INSTALLATION_LABEL, "") == installation]
    return [family for family in families if family.samples]


def merge_families(texts: Iterable[str], prefix: str = FAMILY_PREFIX,
                   installation: str | None = None) -> tuple[list[Metric], int]:
    """The families named ``prefix*`` of several Prometheus texts, one family per name with the
    samples of every text (each node labels its samples with its own address, so none collide),
    only those of ``installation`` when given, and how many texts could not be read (skipped
    whole, the others kept)."""
    merged: dict[str, Metric] = {}
    unreadable = 0
    for text in texts:
        try:
            families = _families_of(text, prefix, installation)
        except ValueError as exc:
            log.warning("unreadable metrics from a Ray node: %s", exc)
            unreadable += 1
            continue
        for family in families:
            kept = merged.get(family.name)
            if kept is None:
                merged[family.name] = family
            elif kept.type == family.type:
                kept.samples.extend(family.samples)
            else:
                log.warning("metric %s is a %s on one node and a %s on another: kept the first",
                            family.name, kept.type, family.type)
    return [merged[name] for name in sorted(merged)], unreadable


class _Families:
    """A collector that serves families read elsewhere (prometheus_client renders them)."""

    def __init__(self, families: Sequence[Metric]):
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


def render(families: Sequence[Metric]) -> bytes:
    registry = prometheus_client.CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return prometheus_client.generate_latest(registry)


async def _fetch(client: httpx.AsyncClient, source: MetricsSource) -> str | None:
    try:
        response = await client.get(source.url)
        response.raise_for_status()
        return response.text
    except Exception as exc:  # noqa: BLE001 - any failure of one node leaves the others' figures
        # repr: httpx's timeouts have no message of their own
        log.warning("metrics agent of node %s (%s) did not answer: %r", source.node_id[:12], source.url, exc)
        return None


async def cluster_metrics_text(installation: str | None, sources: Sequence[MetricsSource] | None = None,
                               timeout_s: float = SCRAPE_BUDGET_S) -> bytes:
    """The ``ray_quadracode_*`` families of every node (of ``installation`` only, unless None), in
    the Prometheus text format, and a gauge of the nodes whose agent did not answer within
    ``timeout_s`` (all nodes read at once) or answered unreadable text."""
    if sources is None:
        try:
            sources = await asyncio.to_thread(ray_metrics_sources)
        except Exception as exc:  # noqa: BLE001 - the replica's own figures are still served
            log.warning("could not list the Ray nodes for their metrics: %s", exc)
            return b""
    if not sources:
        return b""
    timeout = httpx.Timeout(timeout_s, connect=min(NODE_CONNECT_TIMEOUT_S, timeout_s))
    async with httpx.AsyncClient(timeout=timeout) as client:
        try:  # the client's timeout bounds each phase of a request; this bounds the whole scrape
            texts = await asyncio.wait_for(asyncio.gather(*(_fetch(client, source) for source in sources)),
                                           timeout=timeout_s)
        except TimeoutError:
            log.warning("the Ray nodes' metrics agents did not all answer within %.1f s", timeout_s)
            texts = [None] * len(sources)
    # Parsing a node's export takes milliseconds per node: off the loop that serves the streams.
    return await asyncio.to_thread(_render_cluster, texts, installation)


def _render_cluster(texts: Sequence[str | None], installation: str | None) -> bytes:
    families, unreadable = merge_families((text for text in texts if text is not None), installation=installation)
    unreachable = GaugeMetricFamily("quadracode_metrics_unreachable_nodes",
                                    "Ray nodes whose metrics agent did not answer this scrape, or answered "
                                    "unreadable text (their actors' figures are missing from it).")
    unreachable.add_metric([], sum(text is None for text in texts) + unreadable)
    return render([*families, unreachable])
