"""Multi-node behaviour on a real Ray cluster of several raylets on this machine
(``ray.cluster_utils.Cluster``), run by test_multinode.py in a process of its own (a process
joins one Ray cluster at a time, and the session's single-node cluster is another).

Nodes, each with its own resources (placement is by resources, never by node name):
- head: no CPU, ``fabric`` (the fabric's singletons ask for it: settings.fabric_resources);
- agents: 2 CPUs and ``api`` (the API replica asks for it: settings.api_resources), so every
  agent and the Serve app's replica land there;
- two workspace nodes: no CPU, ``workspace``: every sandbox actor lands on one of them.
So every envelope between an agent and the orchestrator, and every exec an agent makes,
crosses nodes. The cases run in order: the last one removes a workspace node.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import uuid
from pathlib import Path

import pytest
import ray

from quadracode_ray import NAMESPACE
from quadracode_ray.config import Settings
from quadracode_ray.interfaces.workspace import WorkspaceUnavailable
from sandbox.snapshot_copies import drop_copies
from sandbox.snapshots import POSTGRES_COPIES
from tests.actors.conftest import FAST
from tests.cluster.patient_ray import patient
from tests.cluster.ray_up_rig import stop_processes
from tests.conftest import free_port
from tests.polling import eventually

TAG = uuid.uuid4().hex[:8]


def agent_ports() -> dict[str, int]:
    """Fixed ports for a node's agents, never Ray's defaults (other Ray clusters run here)."""
    return {"metrics_agent_port": free_port(), "metrics_export_port": free_port(),
            "dashboard_agent_listen_port": free_port(), "runtime_env_agent_port": free_port()}


def add_node(cluster, **args):
    return cluster.add_node(**args, **agent_ports())


def start_cluster():
    """Head and three nodes. Ray 2.60's raylet gives its agents a fixed 15 s to report their
    ports and aborts past it, which a loaded machine (other engineers' tests) can exceed: the
    agents' imports are warmed first, and a failed attempt is stopped (only its own processes,
    by its temp dir) and made again."""
    import ray.dashboard.agent  # noqa: F401 - warms the page cache for the agents' imports
    import ray.dashboard.modules.reporter.reporter_agent  # noqa: F401
    from ray.cluster_utils import Cluster

    patient()
    attempts = 6
    for attempt in range(attempts):
        temp_dir = tempfile.mkdtemp(prefix="qr-mn-")
        try:
            # Explicit ports, never Ray's defaults: other Ray clusters run on this machine.
            cluster = Cluster(initialize_head=True, connect=False, shutdown_at_exit=True, head_node_args={
                "gcs_server_port": free_port(), "num_cpus": 0, "resources": {"fabric": 10},
                "include_dashboard": False, "temp_dir": temp_dir, **agent_ports()})
            nodes = {
                "agents": add_node(cluster, num_cpus=2, resources={"api": 1}),
                "ws1": add_node(cluster, num_cpus=0, resources={"workspace": 4}),
                "ws2": add_node(cluster, num_cpus=0, resources={"workspace": 4}),
            }
            cluster.wait_for_nodes()
            return cluster, nodes
        except Exception:
            stop_processes(temp_dir)
            if attempt == attempts - 1:
                raise


@pytest.fixture(scope="module")
def cluster():
    cluster, nodes = start_cluster()
    ray.init(address=cluster.address, namespace=NAMESPACE, logging_level="WARNING")
    node_ids = {name: node.node_id for name, node in nodes.items()} | {"head": cluster.head_node.node_id}
    yield cluster, node_ids, nodes
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def settings(cluster, database_url: str, docker_client, tmp_path_factory) -> Settings:
    from sandbox.testing import remove_installation

    root = tmp_path_factory.mktemp("multinode")
    settings = Settings(
        _env_file=None, database_url=database_url, data_dir=root / "data", actor_name_prefix=f"mn{TAG}-",
        sandbox_installation_id=f"mn{TAG}",  # snapshots in Postgres (the default): no shared folder
        sandbox_memory_mb=256, sandbox_cpus=1.0, sandbox_idle_stop_s=0,
        fabric_resources={"fabric": 0.01}, fabric_local_channel=True,
        # Heartbeats cross nodes on a machine other test runs load: a 3 s TTL reaped a live agent
        # now and then, which reassigned its task a second time (one TASK envelope too many).
        **{**FAST, "workspace_client_factory": "actors.workspaces:sandbox_workspace_client", "registry_ttl_s": 10.0},
        fleet_max_agents=6, delivery_max_attempts=3,
    )
    yield settings
    remove_installation(settings.sandbox_installation_id, docker_client)


def records(settings: Settings):
    from sandbox.placement import placement_records

    return placement_records(settings)


async def test_a_workspace_is_placed_on_a_workspace_node_and_its_node_recorded(cluster, settings):
    from sandbox.client import get_workspace

    _, node_ids, _ = cluster
    workspace = await get_workspace("pinned", settings)
    where = (await workspace.ping()).node_id
    assert where in (node_ids["ws1"], node_ids["ws2"])
    assert records(settings).get("pinned").node_id == where


@ray.remote(num_cpus=1)
def drive_from_elsewhere(workspace_id: str, settings: Settings) -> dict:
    """A worker on the agents' node driving the workspace, as an agent does."""
    from sandbox.client import get_workspace

    async def drive():
        workspace = await get_workspace(workspace_id, settings)
        await workspace.write_file("from-agents-node.txt", "written across nodes")
        result = await workspace.exec("cat from-agents-node.txt && hostname")
        return {"stdout": result.stdout, "exit_code": result.exit_code,
                "workspace_node": (await workspace.ping()).node_id}

    return asyncio.run(drive()) | {"caller_node": ray.get_runtime_context().get_node_id()}


async def test_a_worker_on_another_node_drives_the_workspace(cluster, settings):
    _, node_ids, _ = cluster
    seen = await drive_from_elsewhere.remote("pinned", settings)
    assert seen["caller_node"] == node_ids["agents"]
    assert seen["workspace_node"] == records(settings).get("pinned").node_id != seen["caller_node"]
    assert seen["exit_code"] == 0 and seen["stdout"].startswith("written across nodes")


async def test_a_restarted_workspace_actor_comes_back_on_its_node_with_its_files(cluster, settings):
    from sandbox.client import existing_workspace, get_workspace

    workspace = await get_workspace("pinned", settings)
    await workspace.write_file("kept.txt", "still here")
    before = await workspace.ping()
    ray.kill(workspace.handle, no_restart=False)  # Ray restarts it (max_restarts=-1)

    async def restarted():
        try:
            now = await existing_workspace("pinned", settings).ping()
        except WorkspaceUnavailable:
            return None
        return now if now.pid != before.pid else None

    after = await eventually(restarted, timeout=90, what="the workspace actor restarted")
    assert after.node_id == before.node_id
    assert await existing_workspace("pinned", settings).read_text("kept.txt") == "still here"


async def test_a_recorded_node_places_a_new_workspace_and_hand_over_crosses_nodes(cluster, settings):
    from sandbox.client import get_workspace, hand_over
    from sandbox.placement import NodeRecord

    _, node_ids, _ = cluster
    source = await get_workspace("pinned", settings)
    source_node = (await source.ping()).node_id
    other = node_ids["ws2"] if source_node == node_ids["ws1"] else node_ids["ws1"]
    records(settings).move("receiver", NodeRecord(other, "127.0.0.1"))  # where the receiver must go
    receiver = await get_workspace("receiver", settings)
    assert (await receiver.ping()).node_id == other != source_node
    await source.mkdir("dist")
    await source.write_file("dist/app.whl", b"\x00wheel\xff")
    assert await hand_over(source, "dist", receiver, "incoming") >= 1
    assert await receiver.read_file("incoming/dist/app.whl") == b"\x00wheel\xff"


async def test_envelopes_cross_nodes_over_ray_with_sockets_on_and_an_agent_killed_mid_task(cluster, settings):
    from ray._private.state import (
        actors as actor_table,  # the GCS's table: this cluster runs no dashboard
    )

    from actors.bootstrap import ensure_system_async, shutdown_system
    from actors.client import FabricClient
    from actors.common import ORCHESTRATOR, actor_name
    from quadracode_ray.envelope import AGENT_LOST, TASK, TASK_RESULT, USER_MESSAGE, EnvelopeFilter
    from sandbox.client import get_workspace
    from tests.actors.test_orchestrator import expect_logged, result_message

    _, node_ids, _ = cluster
    system = await ensure_system_async(settings)
    try:
        client = FabricClient.from_handles(system)
        thread = str(uuid.uuid4())  # a thread id is a UUID
        victim = await system.fleet.spawn.remote({"kind": "coder", "capabilities": ["sigkill"]})
        values = await client.run_and_wait(thread, f"delegate@sigkill: hang-on:{victim.agent_id} then finish",
                                           timeout_s=90)
        (task_id,) = values["delegated"]
        handle = await system.fleet.get_handle.remote(victim.agent_id)

        async def running():
            return task_id in (await handle.status.remote())["running_tasks"]

        await eventually(running, timeout=60, what="the task running on the victim")
        os.kill(await handle.pid.remote(), signal.SIGKILL)  # same machine: the agents' node is a local raylet

        texts = await eventually(lambda: result_message(client, thread, task_id), timeout=90, what="reassigned result")
        assert texts == [f"result {task_id}: succeeded done: hang-on:{victim.agent_id} then finish"]
        info = await system.orchestrator.task_status.remote(task_id)
        assert info.status == "succeeded" and info.agent_id != victim.agent_id
        assert len(await system.events.query.remote(EnvelopeFilter(kind=AGENT_LOST, text_regex=victim.agent_id))) == 1
        await expect_logged(system, thread, {USER_MESSAGE: 1, TASK: 2, TASK_RESULT: 1})

        # Where everything ran: the orchestrator on the head, both agents on the agents' node.
        placed = {a["Name"]: a["Address"]["NodeID"] for a in actor_table().values()
                  if a["State"] == "ALIVE" and a["Name"].startswith(settings.actor_name_prefix)}
        assert placed[actor_name(settings, ORCHESTRATOR)] == node_ids["head"]
        agents = [node for name, node in placed.items() if "agent:" in name]  # an idle agent may be gone
        assert all(node == node_ids["agents"] for node in agents)
        # Sockets are on (the orchestrator listens; the head's fabric actors use it), yet the result
        # went to the orchestrator on another node through Ray: every socket attempt of the agent
        # found no socket on its node, then took the Ray call.
        assert (await system.orchestrator.stats.remote())["channel"]["served"] is not None
        if actor_name(settings, info.agent_id) in placed:
            survivor = await system.fleet.get_handle.remote(info.agent_id)
            survivor_sent = (await survivor.status.remote())["channel"]["sent"]
            assert survivor_sent["requests"] == survivor_sent["unavailable"] >= 1
        # The agent (agents' node) wrote its file in the sandbox (a workspace node).
        workspace = await get_workspace("default", settings)
        assert await workspace.read_text(f"{task_id}.txt") == f"hang-on:{victim.agent_id} then finish"
        assert (await workspace.ping()).node_id in (node_ids["ws1"], node_ids["ws2"])
    finally:
        shutdown_system(settings)


async def test_a_run_executor_on_another_node_runs_an_api_run(cluster, settings):
    """Run executors ask for no node: one that asks for a CPU lands on the agents' node (the only
    one with CPUs) and runs a queued API run there, its queue and checkpoints in the one Postgres."""
    from actors.run_executor import RunExecutor
    from quadracode_ray.persistence.pool import open_async_pool
    from runs import queue
    from runs.enqueue import enqueue_run, run_id_for
    from runs.settings import RunSettings
    from tests.api.graphs import TEST_GRAPHS

    _, node_ids, _ = cluster
    name = f"{settings.actor_name_prefix}run-executor-mn"
    run_settings = settings.model_copy(update={"graphs": TEST_GRAPHS})
    executor = RunExecutor.options(name=name, namespace=NAMESPACE, num_cpus=1).remote(
        name, run_settings, settings.database_url, [name])
    try:
        assert await executor.ready.remote() == name
        pool = await open_async_pool(settings.database_url, min_size=1, max_size=2, name="multinode-test")
        try:
            thread_id = str(uuid.uuid4())
            async with pool.connection() as conn:
                await conn.execute("INSERT INTO qr_threads (thread_id, metadata) VALUES (%s, '{}')", (thread_id,))
            run_id = run_id_for(uuid.uuid4().hex)
            assert await enqueue_run(pool, run_id=run_id, thread_id=thread_id, executor=name, metadata={},
                                     settings=RunSettings(graph_id="echo", input={"items": ["across"]}))
            await executor.submit_run.remote(run_id)

            async def succeeded():
                row = await queue.run_status(pool, run_id)
                return row if row["status"] == "success" else None

            row = await eventually(succeeded, timeout=120, what="the run on the agents' node to succeed")
            assert row["executor"] == name
        finally:
            await pool.close()
        from ray._private.state import actors as actor_table

        placed = {a["Name"]: a["Address"]["NodeID"] for a in actor_table().values() if a["State"] == "ALIVE"}
        assert placed[name] == node_ids["agents"] != node_ids["head"]
    finally:
        ray.kill(executor, no_restart=True)


@pytest.fixture(scope="module")
def api(cluster, settings):
    """The Serve app, its replica asking for the ``api`` resource (api_resources), which only the
    agents' node offers; HTTP through the head's proxy. Returns the API's URL."""
    from ray import serve

    from serve_app.app import APP_NAME, build_app
    from tests.api.conftest import kill_run_executors
    from tests.api.graphs import TEST_GRAPHS

    overrides = settings.model_dump(mode="json", exclude_unset=True)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
    try:
        serve.run(build_app({"settings": {**overrides, "graphs": TEST_GRAPHS, "api_resources": {"api": 0.5}},
                             "fabric": False}), name=APP_NAME, route_prefix="/", blocking=False)
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        kill_run_executors(settings.database_url)


async def test_the_api_replica_on_a_worker_node_serves_a_run(cluster, api):
    """The replica lands on the agents' node, not on the head, and serves a run over HTTP through
    the head's proxy (the official SDK), its run queued and checkpointed in the one Postgres."""
    from langgraph_sdk import get_client
    from ray._private.state import actors as actor_table

    from serve_app.app import APP_NAME

    _, node_ids, _ = cluster
    client = get_client(url=api)
    thread = await client.threads.create()
    assert await client.runs.wait(thread["thread_id"], "echo", input={"items": ["via a worker"]}) \
        == {"items": ["via a worker", "a"]}
    assert (await client.threads.get(thread["thread_id"]))["status"] == "idle"

    replicas = [a["Address"]["NodeID"] for a in actor_table().values()
                if a["State"] == "ALIVE" and a["ActorClassName"].startswith(f"ServeReplica:{APP_NAME}:")]
    proxies = [a["Address"]["NodeID"] for a in actor_table().values()
               if a["State"] == "ALIVE" and a["ActorClassName"] == "ProxyActor"]
    assert replicas == [node_ids["agents"]] and node_ids["agents"] != node_ids["head"]
    assert proxies == [node_ids["head"]]  # the request crossed nodes: head's proxy, worker's replica


async def test_a_workspace_whose_node_is_gone_fails_clearly_and_is_restored_elsewhere(cluster, settings, api,
                                                                                        docker_client):
    """Restored over HTTP (POST /workspaces/{id}/restore, the API on the agents' node) from the
    snapshot's Postgres copy: the lost machine's disk (its snapshot folder) is gone too."""
    import shutil

    import httpx

    from sandbox.client import get_workspace
    from sandbox.deployments.docker import LABEL_INSTALLATION, LABEL_WORKSPACE

    ray_cluster, node_ids, nodes = cluster
    http = httpx.AsyncClient(base_url=api, timeout=300)
    workspace = await get_workspace("pinned", settings)
    await workspace.write_file("keep.txt", "in the snapshot")
    snapshot = await workspace.snapshot("before the node is lost")
    await workspace.write_file("late.txt", "after the snapshot")
    # A deleted snapshot's copies are removed on each workspace node, and only there (here the
    # copy only: the snapshot stays recorded, and the restore below fetches it from Postgres).
    reached = await asyncio.to_thread(drop_copies, settings, "pinned", snapshot.snapshot_id)
    assert reached == {node_ids["ws1"], node_ids["ws2"]}
    lost = (await workspace.ping()).node_id
    lost_name = next(name for name, node_id in node_ids.items() if node_id == lost)
    live = await http.post("/workspaces/pinned/restore")  # its node is alive: restore in place
    assert live.status_code == 409 and "restore_snapshot" in live.json()["detail"]

    ray_cluster.remove_node(nodes[lost_name])
    # The machine is gone with its Docker engine and its disk: here the engine and the disk are
    # shared, so remove the container and the node's snapshot folder.
    labels = [f"{LABEL_INSTALLATION}={settings.sandbox_installation_id}", f"{LABEL_WORKSPACE}=pinned"]
    for container in docker_client.containers.list(all=True, filters={"label": labels}):
        container.remove(force=True)
    shutil.rmtree(Path(settings.snapshot_root, "pinned"))

    async def clear_error():
        try:
            await get_workspace("pinned", settings)
        except WorkspaceUnavailable as exc:
            return str(exc) if lost in str(exc) else None
        return None

    message = await eventually(clear_error, timeout=120, what="WorkspaceUnavailable naming the lost node")
    assert "restore" in message
    with pytest.raises(WorkspaceUnavailable, match=lost):  # an operation through the client it had
        await workspace.exec("true")

    # A restore that cannot happen (no such snapshot) changes nothing: still unavailable, naming the node.
    missing = await http.post("/workspaces/pinned/restore", json={"snapshot_id": "20000101T000000-0badc0de"})
    assert missing.status_code == 404 and "no snapshot" in missing.json()["detail"]
    assert records(settings).get("pinned").node_id == lost
    assert lost in await clear_error()

    restored = await http.post("/workspaces/pinned/restore")
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert body["snapshot"]["snapshot_id"] == snapshot.snapshot_id
    where = body["node"]
    assert where != lost and where in (node_ids["ws1"], node_ids["ws2"])
    assert records(settings).get("pinned").node_id == where
    back = await get_workspace("pinned", settings)
    assert await back.read_text("keep.txt") == "in the snapshot"
    assert "late.txt" not in {f.path for f in await back.list_files()}
    copy = Path(settings.snapshot_root, "pinned", POSTGRES_COPIES, f"{snapshot.snapshot_id}.tar")
    assert copy.is_file()  # fetched from Postgres
    await back.delete_snapshot(snapshot.snapshot_id)  # the actor drops the copies of every workspace node
    assert not copy.exists() and snapshot.snapshot_id not in {s.snapshot_id for s in await back.list_snapshots()}
    files = await http.get("/workspaces/pinned/files/content", params={"path": "keep.txt"})
    assert files.status_code == 200 and files.text == "in the snapshot"
    await http.aclose()
