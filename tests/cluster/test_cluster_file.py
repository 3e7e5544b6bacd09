"""The shipped cluster.yaml stays right for real machines (test_ray_up.py runs a copy adapted to
one machine, so these are the facts that copy changes and could hide)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_the_local_provider_runs_every_listed_worker_on_real_addresses():
    provider = CONFIG["provider"]
    assert provider["type"] == "local"
    workers = provider["worker_ips"]
    # The local provider caps the workers at max_workers, whatever worker_ips lists.
    assert CONFIG["min_workers"] == CONFIG["max_workers"] == len(workers) >= 1
    for address in (provider["head_ip"], *workers):
        assert not ipaddress.ip_address(address).is_loopback, address


def test_the_repository_goes_where_the_ssh_user_can_write():
    # Ray's file mounts run `mkdir -p` and rsync as the ssh user, without sudo.
    assert list(CONFIG["file_mounts"]) == ["~/quadracode-ray"]
    commands = [c for key in ("setup_commands", "head_setup_commands", "worker_setup_commands",
                              "head_start_ray_commands", "worker_start_ray_commands") for c in CONFIG[key]]
    assert all("~/quadracode-ray" in c for c in commands)


def test_each_node_runs_one_ray_that_workers_join_at_the_head():
    head, worker = " ".join(CONFIG["head_start_ray_commands"]), " ".join(CONFIG["worker_start_ray_commands"])
    # One Ray per real machine: `ray stop` first (the test's copy drops it, it would stop every Ray here).
    assert CONFIG["head_start_ray_commands"][0].endswith("ray stop")
    assert CONFIG["worker_start_ray_commands"][0].endswith("ray stop")
    assert re.search(r"ray start --head --port=6379\b", head)
    assert "--address=$RAY_HEAD_IP:6379" in worker and "127.0.0.1" not in worker
    assert """--resources='{"fabric": 1}'""" in head and "workspace" not in head.split("quadracode-ray up")[0]
    assert re.search(r"""--resources='\{"workspace": \d+\}'""", worker)


def test_the_head_starts_the_whole_system_with_the_clusters_postgres():
    head = CONFIG["head_start_ray_commands"]
    system = [c for c in head if "quadracode-ray up" in c]
    assert len(system) == 1 and "--cluster-postgres" in system[0]
    assert "QUADRACODE_HTTP_HOST=0.0.0.0" in system[0] and "QUADRACODE_FABRIC_RESOURCES" in system[0]
    assert "RAY_PROMETHEUS_HOST=http://127.0.0.1:9090" in " ".join(head)  # observability/prometheus.yml's port
    assert any("scripts/dev provision" in c for c in CONFIG["worker_setup_commands"])  # Docker and the image


def test_every_nodes_ray_starts_with_the_ingress_environment():
    # Serve reads its ingress switches in every process, from its node's environment at `ray start`.
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = [c for c in CONFIG[key] if "ray start" in c]
        assert re.match(r"cd ~/quadracode-ray && ingress=\$\(\.venv/bin/quadracode-ray ingress-env\) &&\s+env \$ingress ",
                        start), start
    assert any("provision-haproxy.sh" in c for c in CONFIG["head_setup_commands"])
