"""The shipped Grafana dashboard and Prometheus config: every series a panel queries is one the
code declares (a renamed metric would leave a silently empty panel), and Prometheus finds the
nodes through Ray's service-discovery file, as Ray's docs configure it."""

from __future__ import annotations

import ast
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


def declared_tags() -> dict[str, set[str]]:
    """Each metric's tag keys, read from its ``metrics.counter/gauge/histogram(name, doc, tags)``
    call (a tuple of strings, possibly starring a module-level tuple such as ``_TAGS``)."""
    found: dict[str, set[str]] = {}
    for folder in ("actors", "runs", "sandbox", "serve_app", "quadracode_ray"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            constants = {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                         for target in node.targets if isinstance(target, ast.Name)}
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("counter", "gauge", "histogram")
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "metrics"
                        and node.args and isinstance(node.args[0], ast.Constant)):
                    found[node.args[0].value] = _strings(node.args[2], constants) if len(node.args) > 2 else set()
    return found


def _strings(node: ast.AST, constants: dict[str, ast.AST]) -> set[str]:
    if isinstance(node, ast.Name) and node.id in constants:
        return _strings(constants[node.id], constants)
    if isinstance(node, ast.Starred):
        return _strings(node.value, constants)
    if isinstance(node, ast.Tuple | ast.List):
        return set().union(*(_strings(element, constants) for element in node.elts))
    return {node.value} if isinstance(node, ast.Constant) and isinstance(node.value, str) else set()


def test_every_panel_groups_by_labels_its_metric_has():
    """A label the series lacks (a renamed tag) sums every series into one unlabelled line."""
    dashboard = json.loads((ROOT / "observability" / "grafana-quadracode.json").read_text())
    tags = declared_tags()
    assert tags["llm_tokens_total"] == {"provider", "model", "direction"}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            (name, suffix), *_ = QUERIED.findall(expr)
            allowed = tags[name] | {"installation"} | ({"le"} if suffix == "_bucket" else set())
            for group in re.findall(r"\bby \(([^)]*)\)", expr):
                labels = {label.strip() for label in group.split(",")}
                assert labels <= allowed, f"{panel['title']}: {expr} groups by {labels - allowed}, not labels of {name}"


def test_prometheus_scrapes_the_nodes_listed_in_rays_service_discovery_file():
    config = yaml.safe_load((ROOT / "observability" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["file_sd_configs"][0]["files"] == ["/tmp/ray/prom_metrics_service_discovery.json"]
