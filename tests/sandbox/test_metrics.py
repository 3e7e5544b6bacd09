"""A workspace actor's operation durations reach Ray's metrics agent (what /metrics serves and
the dashboard's Prometheus scrapes), labelled with the operation and its outcome."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from quadracode_ray.interfaces.workspace import WorkspacePathNotFound
from sandbox.client import get_workspace
from serve_app.metrics_cluster import cluster_metrics_text
from tests.polling import eventually

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _operation_counts(text: str, worker_id: str) -> dict[tuple[str, str], float]:
    """(operation, outcome) -> count, of one actor process's ``sandbox_operation_seconds``."""
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ray_quadracode_sandbox_operation_seconds_count" \
                    and sample.labels.get("WorkerId") == worker_id:
                counts[(sample.labels["operation"], sample.labels["outcome"])] = sample.value
    return counts


async def test_exec_and_file_operations_are_timed_per_operation_and_outcome(sandbox_settings):
    settings = sandbox_settings()
    client = await get_workspace("metered", settings)
    worker_id = (await client.ping()).worker_id
    for _ in range(3):
        assert (await client.exec("true")).exit_code == 0
    with pytest.raises(WorkspacePathNotFound):
        await client.read_file("no/such/file")

    async def recorded() -> dict | None:
        counts = _operation_counts((await cluster_metrics_text(settings.actor_name_prefix)).decode(), worker_id)
        return counts if counts.get(("exec", "ok"), 0) >= 3 and ("read_file", "error") in counts else None

    counts = await eventually(recorded, timeout=30, what="the workspace actor's figures", interval=0.25)
    assert counts[("exec", "ok")] == 3
    assert counts[("read_file", "error")] == 1
    assert ("exec", "error") not in counts
