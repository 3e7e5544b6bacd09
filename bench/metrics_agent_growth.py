"""Does a Ray node's metrics agent keep the series of dead workers? (what /metrics scrapes)

    /work/team/heavy .venv/bin/python bench/metrics_agent_growth.py [--batch 40] [--rounds 6]
    .venv/bin/python bench/metrics_agent_growth.py --recorder-only   # no Ray started

With Ray: a local Ray (1 s report interval, as the tests'), then rounds of short-lived actors that
each time two kinds of sandbox operation through the project's backend and die; after each round
and while idle, the node agent's export: bytes, samples, distinct WorkerIds, time to fetch.
``--recorder-only``: Ray's own OpenTelemetry recorder (what the agent runs) fed as dead workers
feed it, and the time to render its Prometheus text. Report: bench/reports/metrics_agent.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
import uuid

BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
COMMON = {"Component": "core_worker", "NodeAddress": "10.0.0.1", "SessionName": "session_x",
          "Version": "2.60.0", "JobId": "01000000", "installation": "bench-"}


def recorder_only() -> None:
    from prometheus_client import REGISTRY, generate_latest
    from ray._private.telemetry.open_telemetry_metric_recorder import OpenTelemetryMetricRecorder

    recorder = OpenTelemetryMetricRecorder(gauge_metric_ttl_seconds=2.0)
    recorder.register_histogram_metric("quadracode_sandbox_operation_seconds", "d", BOUNDS)
    recorder.register_counter_metric("quadracode_envelopes_total", "e")
    dead = 0
    for target in (0, 100, 500, 1000, 2000, 3000):
        while dead < target:
            worker_id = uuid.uuid4().hex
            counts = [0, 3] + [0] * (len(BOUNDS) - 1)
            recorder.record_histogram_aggregated_batch("quadracode_sandbox_operation_seconds", [
                {"tags": {**COMMON, "WorkerId": worker_id, "operation": op, "outcome": "ok"}, "bucket_counts": counts}
                for op in ("exec", "read_file", "write_file", "list_files")])
            recorder.set_metric_value("quadracode_envelopes_total", {**COMMON, "WorkerId": worker_id, "kind": "x"}, 1.0)
            dead += 1
        started = time.perf_counter()
        text = generate_latest(REGISTRY)
        lines = text.count(b"\n")
        print(f"{dead:5d} dead workers: {len(text) / 1024:8.0f} KiB, {lines:6d} lines, "
              f"rendered in {time.perf_counter() - started:.3f} s", flush=True)


def live(batch: int, rounds: int) -> None:
    os.environ["RAY_metrics_report_interval_ms"] = "1000"
    import httpx
    import ray

    ray.init(address="local", num_cpus=8, include_dashboard=False, logging_level="WARNING", namespace="bench")

    @ray.remote(num_cpus=0)
    class ShortLived:
        def work(self) -> None:
            from quadracode_ray import metrics
            from quadracode_ray.ray_metrics import install_ray_metrics

            install_ray_metrics("bench-")
            timed = metrics.histogram("sandbox_operation_seconds", "d", ("operation", "outcome"))
            for operation in ("exec", "read_file"):
                timed.observe(0.01, {"operation": operation, "outcome": "ok"})
            time.sleep(2.5)  # past one report interval: the figures reach the agent

    node = next(n for n in ray.nodes() if n["Alive"])
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"

    def scrape(when: str) -> None:
        started = time.perf_counter()
        text = httpx.get(url, timeout=60).text
        samples = [line for line in text.splitlines() if line and not line.startswith("#")]
        worker_ids = {line.split('WorkerId="')[1].split('"')[0] for line in samples if 'WorkerId="' in line}
        families = collections.Counter(line.split("{")[0] for line in samples if 'WorkerId="' in line)
        print(json.dumps({"at": when, "bytes": len(text), "samples": len(samples), "worker_ids": len(worker_ids),
                          "fetch_s": round(time.perf_counter() - started, 3),
                          "top_worker_families": families.most_common(3)}), flush=True)

    time.sleep(5)
    scrape("start")
    for n in range(1, rounds + 1):
        actors = [ShortLived.remote() for _ in range(batch)]
        ray.get([actor.work.remote() for actor in actors])
        for actor in actors:
            ray.kill(actor)
        time.sleep(4)
        scrape(f"after {n * batch} dead actors")
    for idle in (30, 130):
        time.sleep(idle if idle == 30 else idle - 30)
        scrape(f"{idle} s idle after")
    ray.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--recorder-only", action="store_true")
    args = parser.parse_args()
    recorder_only() if args.recorder_only else live(args.batch, args.rounds)
