"""The whole machine's processes killed at once, then ``up``: everything acknowledged is there.

The "code name" test made hard: ``quadracode-ray up`` starts a private system (its own Ray head,
embedded Postgres, ports and sandbox installation); a load of runs, streams, store puts and a
delegated task runs against it; then every process of that Ray head (the ``ray start`` process
and all its descendants: GCS, raylet, workers, actors, the Serve replica) and of that Postgres
(the postmaster and its backends) gets SIGKILL at the same moment, by pid: no clean ``down``,
and nothing else on the machine is touched (never ``ray stop``). Then ``up`` again, and the
audit of tests/reliability/load.py. Appends its section to bench/reports/faults.md.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from quadracode_ray.launcher.state import StateFile
from tests.conftest import free_port
from tests.foundation.test_cli_system import run_cli
from tests.polling import eventually
from tests.reliability.load import STREAM_RECONNECT_WARNING, Load, audit
from tests.reliability.test_faults import REPORT, a_fresh_run_succeeds

UP_DEADLINE_S = 420  # `up`: Postgres, the Ray head (120 s at most), the Serve deploy (300 s at most)
LOAD_DEADLINE_S = 240
RECOVERY_DEADLINE_S = 180
AUDIT_DEADLINE_S = 240
pytestmark = [
    pytest.mark.slow,
    STREAM_RECONNECT_WARNING,
    # Honest deadlines, each part's own summed (two `up`s, the load, the recovery, the audit, the
    # fixture's `down`): the suite's default of 300 s for a whole test is what a loaded machine's
    # first `up` alone can take (the Ray head start ran close to its 120 s at load 30).
    pytest.mark.timeout(3 * UP_DEADLINE_S + 2 * LOAD_DEADLINE_S + RECOVERY_DEADLINE_S + AUDIT_DEADLINE_S),
]
GRAPHS = '{"echo": "tests.api.graphs:echo"}'


@pytest.fixture(scope="module")
def system_env() -> Iterator[dict[str, str]]:
    from sandbox.testing import remove_installation

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("QUADRACODE_") and k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")}
    root = Path(__file__).resolve().parents[2]
    env.update({
        "QUADRACODE_DATA_DIR": str(Path("/tmp") / f"qr-kill-{uuid.uuid4().hex[:8]}"),
        "QUADRACODE_HTTP_PORT": str(free_port()), "QUADRACODE_RAY_PORT": str(free_port()),
        "QUADRACODE_DASHBOARD_PORT": str(free_port()), "QUADRACODE_RAY_NUM_CPUS": "2",
        "QUADRACODE_MODEL": "scripted:default", "QUADRACODE_GRAPHS": GRAPHS,
        "QUADRACODE_SANDBOX_INSTALLATION_ID": f"kill{uuid.uuid4().hex[:8]}",
        "QUADRACODE_SANDBOX_MEMORY_MB": "512",
        # the Ray workers import the test graphs from this checkout
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")])),
    })
    try:
        yield env
    finally:
        run_cli(env, "down", timeout=UP_DEADLINE_S)
        shutil.rmtree(env["QUADRACODE_DATA_DIR"], ignore_errors=True)
        remove_installation(env["QUADRACODE_SANDBOX_INSTALLATION_ID"])


def our_processes(state_dir: Path) -> list[psutil.Process]:
    """Every process of this system's Ray head and Postgres server, found from what `up` recorded."""
    state = StateFile(state_dir).read()
    roots = [psutil.Process(state.ray.pid)]
    pid_file = Path(state.postgres.pgdata) / "postmaster.pid"
    roots.append(psutil.Process(int(pid_file.read_text().split()[0])))
    found = {p.pid: p for root in roots for p in [root, *root.children(recursive=True)]}
    return list(found.values())


async def test_sigkill_of_every_process_then_up_loses_nothing(system_env: dict[str, str]) -> None:
    up = await asyncio.to_thread(run_cli, system_env, "up", timeout=UP_DEADLINE_S)
    assert up.returncode == 0, up.stderr + up.stdout
    api = f"http://127.0.0.1:{system_env['QUADRACODE_HTTP_PORT']}"
    state_dir = Path(system_env["QUADRACODE_DATA_DIR"]) / "run"
    database_url = StateFile(state_dir).read().postgres.url

    load = Load(api, workers=4)
    load.start()
    try:
        await eventually(lambda: load.acknowledged_at_least(12), timeout=LOAD_DEADLINE_S,
                         what="the load to get going")
        await eventually(lambda: asyncio.sleep(0, result=bool(load.acked.tasks)), timeout=LOAD_DEADLINE_S,
                         what="a task delegated")
        victims = await asyncio.to_thread(our_processes, state_dir)
        killed_at = time.monotonic()
        for process in victims:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        await asyncio.sleep(2)  # the load meets the dead system for a moment
    finally:
        await load.stop()
    assert not [p.pid for p in victims if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    again = await asyncio.to_thread(run_cli, system_env, "up", timeout=UP_DEADLINE_S)
    assert again.returncode == 0, again.stderr + again.stdout
    await eventually(lambda: a_fresh_run_succeeds(api), timeout=RECOVERY_DEADLINE_S,
                     what="a fresh run after up")
    recovered_s = time.monotonic() - killed_at
    database_url = StateFile(state_dir).read().postgres.url or database_url
    problems = await audit(database_url, load)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    existing = REPORT.read_text() if REPORT.exists() else "# Faults\n"
    marker = "\n## Whole system killed"
    head = existing[:existing.index(marker)] if marker in existing else existing
    REPORT.write_text(head.rstrip("\n") + "\n" + "\n".join([
        marker.strip("\n"), "",
        "`tests/reliability/test_kill_everything.py`: a private `quadracode-ray up`; SIGKILL at once of "
        f"its {len(victims)} processes (the Ray head's tree and Postgres'), then `up` again.", "",
        f"- load held: {len(load.acked.runs)} runs, {len(load.acked.store_items)} store items, "
        f"{len(load.acked.tasks)} delegated tasks acknowledged; {sum(load.calls.values())} calls",
        f"- requests failed, and how: {load.failed_summary()}",
        f"- time to recover (kill to a fresh run's success, `up` included): {recovered_s:.0f} s",
        f"- items lost: {'; '.join(problems) or '0'}",
        f"- run at (UTC), load average: {datetime.now(UTC):%Y-%m-%d %H:%M}, {os.getloadavg()[0]:.1f}", ""]))
    assert not problems, problems
