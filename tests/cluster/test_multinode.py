"""Runs multinode_cases.py in a pytest process of its own: its Ray cluster of several raylets
(ray.cluster_utils.Cluster) cannot share a process with the session's single-node cluster."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CASES = Path(__file__).with_name("multinode_cases.py")
EXPECTED_CASES = 8


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(1500)
def test_multinode_cases_pass_on_a_cluster_of_several_raylets():
    root = CASES.parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(CASES), "-x", "-q", "-p", "no:cacheprovider", "--timeout=600",
         "-o", "addopts="],
        # Without the session Ray's Serve ingress environment (its HAProxy's ports, taken): the
        # cases' cluster chooses its own, as a session does.
        cwd=root, env={**{k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_")},
                       "RAY_USAGE_STATS_ENABLED": "0"}, capture_output=True, text=True, timeout=1400,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12000:]
    assert re.search(rf"\b{EXPECTED_CASES} passed\b", output), output[-4000:]
