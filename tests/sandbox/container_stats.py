"""What the kernel counts for a workspace container, read through the Docker engine (one-shot
stats, so it works the same on cgroup v1 and v2): its processes and the CPU time it used."""

from __future__ import annotations


def _stats(container) -> dict:
    return container.client.api.stats(container.id, stream=False, one_shot=True)


def container_pids(container) -> int:
    """How many processes (threads included) the container's cgroup holds now."""
    return int(_stats(container).get("pids_stats", {}).get("current") or 0)


def container_cpu_ns(container) -> int:
    """CPU time the container's cgroup has used so far, in nanoseconds."""
    return int(_stats(container)["cpu_stats"]["cpu_usage"]["total_usage"])
