"""Issue 13's rule: the system's parts are placed by resources, never by a node named in code.

Node affinity appears in three places only, each with a node id read at run time, never written
down: a workspace's actor goes to the node recorded as holding its files (sandbox/placement.py),
a deleted snapshot's copy is removed on each live node that holds one (sandbox/snapshot_copies.py),
and the operator's status probes the Docker engine of each live node it lists. Nothing asks for
Ray's per-node resource (``node:<address>``), which would tie a part to one machine.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ("actors", "runs", "sandbox", "serve_app", "quadracode_ray")
AFFINITY_ALLOWED = {"sandbox/placement.py", "sandbox/snapshot_copies.py", "serve_app/operator/status.py"}
NODE_RESOURCE = re.compile(r"""["']node:(?!__internal_head__)[^"']""")
NODE_ADDRESS = re.compile(r"""\b(?:\d{1,3}\.){3}\d{1,3}\b""")


def code_files() -> dict[str, str]:
    return {str(path.relative_to(ROOT)): path.read_text() for folder in CODE for path in (ROOT / folder).rglob("*.py")}


def test_node_affinity_only_where_a_node_is_found_at_run_time():
    using = {name for name, text in code_files().items() if "NodeAffinitySchedulingStrategy" in text}
    assert using == AFFINITY_ALLOWED


def test_no_part_asks_for_a_named_nodes_resource():
    offenders = [name for name, text in code_files().items() if NODE_RESOURCE.search(text)]
    assert offenders == []


def test_no_machine_address_in_the_placement_code():
    for name in ("sandbox/placement.py", "actors/bootstrap.py", "actors/fleet.py", "actors/run_executor.py",
                 "serve_app/executors.py", "serve_app/app.py"):
        assert not NODE_ADDRESS.findall((ROOT / name).read_text()), name
