"""The shipped Grafana dashboard and Prometheus config: every series a panel queries is one the
code declares (a renamed metric would leave a silently empty panel), and Prometheus finds the
nodes through Ray's service-discovery file, as Ray's docs configure it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DECLARED = re.compile(r'metrics\.(counter|gauge|histogram)\(\s*"([a-z_]+)"', re.S)
QUERIED = re.compile(r"\bray_quadracode_([a-z_]+?)(_bucket|_count|_sum)?\b")


def declared_metrics() -> dict[str, str]:
    found: dict[str, str] = {}
    for folder in ("actors", "runs", "sandbox", "serve_app", "quadracode_ray"):
        for path in (ROOT / folder).rglob("*.py"):
            for kind, name in DECLARED.findall(path.read_text()):
                found[name] = kind
    return found


def test_every_panel_queries_a_declared_metric_of_the_right_kind():
    dashboard = json.loads((ROOT / "observability" / "grafana-quadracode.json").read_text())
    declared = declared_metrics()
    assert {"envelopes_total", "sandbox_operation_seconds", "agents_alive"} <= set(declared)
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 8 and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for expr in exprs:
        queried = QUERIED.findall(expr)
        assert queried, expr
        for name, suffix in queried:
            assert name in declared, f"{expr}: ray_quadracode_{name} is declared nowhere"
            if suffix:
                assert declared[name] == "histogram", f"{expr}: {name} is a {declared[name]}, not a histogram"
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "installation"} <= variables
    assert all('installation=~"$installation"' in expr for expr in exprs)


def test_prometheus_scrapes_the_nodes_listed_in_rays_service_discovery_file():
    config = yaml.safe_load((ROOT / "observability" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["file_sd_configs"][0]["files"] == ["/tmp/ray/prom_metrics_service_discovery.json"]
