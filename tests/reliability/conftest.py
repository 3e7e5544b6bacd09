"""Fixtures of the reliability suite: whole systems on the session's Ray, each its own installation.

``secured_system``: the fabric and the Serve app with API keys on, on this module's database
(the fuzzer's target). The fault suite (test_faults.py) starts its own Postgres, which it stops
and restarts, so no other test's database is ever touched by a fault.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from tests.reliability import rig

SECURED_KEY = "fuzz-" + uuid.uuid4().hex
SECURED_OWNER = "fuzzer"


@pytest.fixture(scope="module")
def secured_system(ray_cluster: None, serve_http_port: int, database_url: str, docker_client,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = rig.settings_for(database_url, tmp_path_factory.mktemp("secured"),
                                auth_api_keys=json.dumps({SECURED_OWNER: SECURED_KEY}),
                                auth_admin_owners=[SECURED_OWNER],
                                # one agent at most: each spawn costs tens of seconds here; past the cap a 409
                                fleet_max_agents=1)
    app_name = f"rel-{uuid.uuid4().hex[:6]}"
    try:
        yield rig.deploy(settings, serve_http_port, app_name)
    finally:
        rig.teardown(settings, app_name)
