"""Ray node start-up with patience for a loaded machine (test-only).

A new Ray node must register within 30 s (a constant in ray._private.node) and its raylet waits
``raylet_start_wait_time_s`` for its agents; on this machine, shared with other engineers' test
runs, a node's Python agents can take longer than that to start. ``patient()`` makes the
registration wait up to ``PATIENCE_S``; ``python -m tests.cluster.patient_ray ARGS`` is the
``ray`` CLI with it (the ray-up rig's ``ray start``). Nothing here changes what a node does.
"""

from __future__ import annotations

import os
import sys
import time

PATIENCE_S = 60


def patient() -> None:
    import ray._private.services as services

    os.environ.setdefault("RAY_raylet_start_wait_time_s", str(PATIENCE_S))
    original = services.get_node
    if getattr(original, "patient", False):
        return

    def get_node(*args, **kwargs):
        deadline = time.monotonic() + PATIENCE_S
        while True:
            try:
                return original(*args, **kwargs)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # the node registers when its agents are up: poll with a deadline

    get_node.patient = True
    services.get_node = get_node


if __name__ == "__main__":
    patient()
    from ray.scripts.scripts import main

    sys.argv[0] = "ray"
    sys.exit(main())
