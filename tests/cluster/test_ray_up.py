"""`ray up cluster.yaml` end to end, as a user runs it, on one machine: the cluster launcher's local
provider over a private sshd (head 127.0.0.1, worker 127.0.0.2), the cluster file generated from
the shipped one (ray_up_rig.py says what differs and why), every node's Ray with the API's
ingress environment (HAProxy, named by the rig, to see it applied). Then a run through the LangGraph API
whose agent writes and runs a program in a workspace on the worker node, then `ray down`, and the
thread is still in the cluster's Postgres.

Needs what scripts/provision-cluster-tools.sh installs (sshd, rsync) and Docker.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.cluster.ray_up_rig import (
    HEAD_IP,
    WORKER_IP,
    Rig,
    processes_of,
    stop_processes,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(2400)]


@pytest.fixture(scope="module")
def rig(docker_client) -> Iterator[Rig]:
    from quadracode_ray.config import Settings
    from quadracode_ray.persistence.cluster_postgres import stop_cluster_postgres
    from sandbox.testing import remove_installation

    if not Path("/usr/sbin/sshd").exists() or not shutil.which("rsync"):
        pytest.fail("sshd or rsync is missing: run scripts/provision-cluster-tools.sh", pytrace=False)
    # Short: Ray's unix sockets live under it (107-byte limit).
    rig = Rig(Path(tempfile.mkdtemp(prefix="qru-", dir="/tmp")))
    try:
        rig.start_sshd()
        wait_until(lambda: all(rig.ssh(ip, "echo ready").stdout.strip() == "ready" for ip in (HEAD_IP, WORKER_IP)),
                   60, "the private sshd on both addresses")
        rig.write_cluster_file()
        yield rig
    finally:
        rig.teardown()
        stop_cluster_postgres(Settings(_env_file=None, data_dir=rig.data_dir))
        stop_processes(str(rig.root))  # anything else this cluster left running under the rig
        remove_installation(rig.installation_id, docker_client)
        shutil.rmtree(rig.root, ignore_errors=True)


def state_api(rig: Rig, resource: str) -> list[dict]:
    """Rows of the Ray state API (the dashboard's /api/v0/<resource>)."""
    response = httpx.get(f"http://{HEAD_IP}:{rig.dashboard_port}/api/v0/{resource}", params={"limit": 10000},
                         headers=rig.auth_headers(), timeout=30)
    response.raise_for_status()
    body = response.json()
    rows = body["data"]["result"]
    return rows["result"] if isinstance(rows, dict) else rows


def alive_nodes(rig: Rig) -> dict[str, dict]:
    """Live nodes as "head" and the worker's address (Ray gives the head the machine's address)."""
    try:
        nodes = [n for n in state_api(rig, "nodes") if n["state"] == "ALIVE"]
    except httpx.HTTPError:
        return {}
    return {("head" if n["is_head_node"] else n["node_ip"]): n for n in nodes}


def api_answers(api: str) -> bool:
    try:
        return httpx.get(f"{api}/ok", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def application_deployed_from(rig: Rig, serve_file: Path) -> bool:
    """The application runs with the env_vars of ``serve_file`` (not those `ray up` deployed)."""
    try:
        response = httpx.get(f"http://{HEAD_IP}:{rig.dashboard_port}/api/serve/applications/",
                             headers=rig.auth_headers(), timeout=10)
        app = response.json()["applications"]["quadracode"]
    except (httpx.HTTPError, KeyError, ValueError):
        return False
    env = app["deployed_app_config"]["runtime_env"]["env_vars"]
    return app["status"] == "RUNNING" and env.get("SERVE_CONFIG_MARK") == serve_file.name


def test_ray_up_runs_the_system_on_two_nodes_and_ray_down_keeps_the_data(rig: Rig, docker_client) -> None:
    from langgraph_sdk import get_sync_client

    shipped = (Path(__file__).parents[2] / "cluster.yaml").read_text()
    assert "ray stop" in shipped and "ray stop" not in rig.cluster_file.read_text()

    up = rig.ray_cli("up", "-y", "--no-config-cache", str(rig.cluster_file), timeout=1800)
    print(f"$ ray up -y cluster.yaml\n{up.stdout}{up.stderr}")  # what README "A cluster" shows
    assert up.returncode == 0, (up.stdout + up.stderr)[-8000:]
    api = f"http://{HEAD_IP}:{rig.http_port}"
    assert httpx.get(f"{api}/ok", timeout=10).status_code == 200

    # The head's autoscaler starts the worker over ssh: setup, Docker, `ray start` with `workspace`.
    nodes = wait_until(lambda: (n := alive_nodes(rig)) and WORKER_IP in n and n, 900, "the worker node to join")
    assert nodes[WORKER_IP]["resources_total"].get("workspace") == 8
    assert not nodes["head"]["resources_total"].get("workspace")
    assert nodes["head"]["resources_total"].get("fabric") == 1
    head_address = nodes["head"]["node_ip"]
    # README's check, `ray exec cluster.yaml 'ray status'` (with the address: other Ray clusters
    # run on this machine, and `ray status` alone would pick the latest started).
    # Its report is the autoscaler's last status, seconds behind the GCS: it may still show the
    # worker "setting-up" when the state API above already has it alive (CI, 2026-12-04).
    def status_shows_both_nodes():
        ray_status = rig.ray_cli("exec", str(rig.cluster_file), f"ray status --address={HEAD_IP}:{rig.gcs_port}",
                                 timeout=300)
        assert ray_status.returncode == 0, (ray_status.stdout + ray_status.stderr)[-4000:]
        shown = re.search(r"/8\.0 workspace", ray_status.stdout) and re.search(r"/1\.0 fabric", ray_status.stdout)
        return ray_status if shown else None

    ray_status = wait_until(status_shows_both_nodes, 120, "`ray status` to show the worker's workspace resource",
                            interval=2.0)
    print(f"$ ray exec cluster.yaml 'ray status'\n{ray_status.stdout}")

    # Both nodes' Ray started with the API's ingress (the rig sets QUADRACODE_SERVE_INGRESS=haproxy
    # for cluster.yaml's `quadracode-ray ingress-env`), and the head's HAProxy is the one serving
    # the API: its config file is the one the head's Ray was told (never Serve's shared default).
    envs = {node: raylet_env(rig, node) for node in ("head", "worker")}
    assert all(env.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" for env in envs.values()), envs
    # ... through the launcher that makes HAProxy die with the actor that started it (`ray stop`
    # does not stop the children of Ray's processes).
    assert all(Path(env["RAY_SERVE_HAPROXY_BINARY_PATH"]).name == "quadracode-haproxy" for env in envs.values())
    folder = str(Path(envs["head"]["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"]).parent)
    assert folder != str(Path(envs["worker"]["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"]).parent)
    config_file = wait_until(lambda: haproxy_config_in(folder), 120, f"HAProxy running with a config in {folder}")
    assert re.search(rf"bind \S*:{rig.http_port}\b", Path(config_file).read_text()), config_file

    password_file = rig.data_dir / "cluster-postgres.password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600

    # A run through the API: the orchestrator delegates, an agent writes and runs hello.py in the
    # `default` workspace, which only the worker node can hold.
    client = get_sync_client(url=api, timeout=300)
    thread_id = client.threads.create()["thread_id"]
    values = client.runs.wait(thread_id, "orchestrator", input={"messages": [
        {"role": "user", "content": "delegate to a coder agent: write hello.py that prints 42 and run it"}]})
    assert isinstance(values, dict) and "__error__" not in values, values
    match = re.search(r"Delegated to agent \S+ as task (\S+?)\.", values["messages"][-1]["content"])
    assert match, values["messages"][-1]

    def folded() -> list[str]:
        messages = client.threads.get_state(thread_id)["values"].get("messages", [])
        return [m["content"] for m in messages if m.get("name") == "task_result"]

    results = wait_until(folded, 600, "the agent's result in the thread", interval=0.5)
    assert results[0].startswith(f"[task {match.group(1)} succeeded") and "42" in results[0]

    workspaces = [a for a in state_api(rig, "actors") if a.get("class_name") == "WorkspaceSandbox"
                  and a.get("state") == "ALIVE"]
    assert workspaces, "no live workspace actor"
    node_of = {n["node_id"]: ip for ip, n in alive_nodes(rig).items()}
    assert {node_of[a["node_id"]] for a in workspaces} == {WORKER_IP}
    # One Postgres for everything: no process of the cluster started an embedded one of its own.
    assert not [p for p in processes_of(str(rig.home)) if p.name() == "postgres"]
    # In the dashboard every actor of ours is named, in namespace quadracode, with a readable class
    # (Ray Serve's own controller, proxy and replicas are in namespace serve).
    alive = [a for a in state_api(rig, "actors") if a.get("state") == "ALIVE"]
    ours = [a for a in alive if a.get("ray_namespace") != "serve"]
    assert all(a["ray_namespace"] == "quadracode" and a.get("name") and a["class_name"].isidentifier()
               for a in ours), [(a.get("class_name"), a.get("name"), a.get("ray_namespace")) for a in ours]
    named = {a["name"] for a in ours}
    assert {"workspace:default", "orchestrator", "registry"} <= named, named

    # The operator API and the panel on the same ingress: the system status sees both nodes, the
    # orchestrator, the registry and the workspace answering, and the Docker engine of the worker,
    # the only workspace node; the workspace is on it.
    status = httpx.get(f"{api}/system/status", timeout=120).json()
    assert {n["node_id"] for n in status["nodes"] if n["alive"]} == set(node_of)
    assert {"orchestrator", "registry", "workspace:default"} <= {a["name"] for a in status["actors"] if a["answers"]}
    worker_id = next(node_id for node_id, ip in node_of.items() if ip == WORKER_IP)
    assert [d["node_id"] for d in status["docker"] if d["ok"]] == [worker_id], status["docker"]
    assert httpx.get(f"{api}/workspaces/default", timeout=60).json()["node"] == worker_id
    assert httpx.get(f"{api}/ui/", timeout=60).status_code == 200

    # A real Prometheus scrapes every node through Ray's service-discovery file: PromQL over its
    # HTTP API returns our series, from both nodes (fabric on the head, sandboxes on the worker).
    prometheus = rig.start_prometheus()

    def our_series() -> list[dict] | None:
        try:
            response = httpx.get(f"{prometheus}/api/v1/query", timeout=10, params={
                "query": 'sum by (instance) ({__name__=~"ray_quadracode_.+"})'})
            result = response.json()["data"]["result"]
        except (httpx.HTTPError, KeyError, ValueError):
            return None
        return result if {r["metric"]["instance"].split(":")[0] for r in result} >= {head_address, WORKER_IP} else None

    wait_until(our_series, 180, "ray_quadracode_* series of both nodes in Prometheus")
    envelopes = httpx.get(f"{prometheus}/api/v1/query", params={"query": "sum(ray_quadracode_envelopes_total)"},
                          timeout=10).json()["data"]["result"]
    assert envelopes and float(envelopes[0]["value"][1]) > 0
    # The dashboard reads that Prometheus (RAY_PROMETHEUS_HOST of cluster.yaml's head command).
    health = httpx.get(f"http://{HEAD_IP}:{rig.dashboard_port}/api/prometheus_health", headers=rig.auth_headers(),
                       timeout=30)
    assert health.status_code == 200 and health.json()["msg"] == "prometheus running", health.text
    # Every panel of the shipped Grafana dashboard is a valid query over these series; those of
    # what this run did (envelopes, deliveries, agents, tasks, sandbox operations) show data.
    # A rate needs two scrapes of a series in its window: poll, the freshly started Prometheus may have one.
    wanted = {"Envelopes by kind (per s)", "Agents alive", "Sandbox operations by outcome (per s)"}
    wait_until(lambda: wanted <= {title for title, series in grafana_panels(prometheus).items() if series}, 120,
               f"the Grafana panels {sorted(wanted)} to show data")

    # Users who manage Serve themselves: `serve deploy serve_config.yaml` (the shipped file, its
    # placeholders filled in) replaces the application, which answers on the same thread.
    url = f"postgresql://quadracode:{password_file.read_text().strip()}@{HEAD_IP}:{rig.postgres_port}/quadracode"
    serve_file = rig.write_serve_config(url)
    deploy = rig.ray_cli("deploy", str(serve_file), "--address", f"http://{HEAD_IP}:{rig.dashboard_port}",
                         serve=True, timeout=600)
    assert deploy.returncode == 0, (deploy.stdout + deploy.stderr)[-4000:]
    wait_until(lambda: application_deployed_from(rig, serve_file), 600, "the application of serve_config.yaml")
    wait_until(lambda: api_answers(api), 300, "the API after `serve deploy`")
    values = client.runs.wait(thread_id, "orchestrator", input={"messages": [
        {"role": "user", "content": "Remember the code name OSPREY"}]})
    assert values["messages"][-1]["content"] == "Noted: the code name is OSPREY."

    down = rig.ray_cli("down", "-y", str(rig.cluster_file), timeout=600)
    print(f"$ ray down -y cluster.yaml\n{down.stdout}{down.stderr}")
    assert down.returncode == 0, (down.stdout + down.stderr)[-8000:]
    wait_until(lambda: not processes_of(rig.marker), 120, "every Ray process of the cluster to stop")
    # HAProxy too (its folder is not under the rig's marker), so the API port is free for the next `ray up`.
    wait_until(lambda: haproxy_config_in(folder) is None, 60, f"no HAProxy running with a config in {folder}")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api}/ok", timeout=3)

    # The data stays: the head's Postgres still holds the thread's checkpoints.
    with psycopg.connect(url, connect_timeout=10) as conn:
        count = conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (thread_id,)).fetchone()[0]
    assert count > 0
    # So do the workspaces' files on the worker: the agent's hello.py in `default`'s /workspace.
    assert workspace_file(docker_client, rig, "default", "hello.py") == "print(42)\n"


def raylet_env(rig: Rig, node: str) -> dict[str, str]:
    """The environment of a node's raylet (what its `ray start` was given)."""
    (raylet,) = [p for p in processes_of(f"{rig.marker}/{node}") if p.name() == "raylet"]
    return raylet.environ()


def haproxy_config_in(folder: str) -> str | None:
    """The config file of a haproxy process running with one from ``folder`` (Serve puts it in a
    folder of the node's id inside the configured one: <folder>/<node id>/haproxy.cfg)."""
    import psutil

    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "haproxy" and "-f" in cmdline[:-1]:
            config = cmdline[cmdline.index("-f") + 1]
            if Path(folder) in Path(config).parents:
                return config
    return None


def grafana_panels(prometheus: str) -> dict[str, list]:
    """Each panel of observability/grafana-quadracode.json, queried as Grafana would (every
    installation, a 1 m rate window): its title and the series Prometheus returns."""
    dashboard = json.loads((Path(__file__).parents[2] / "observability" / "grafana-quadracode.json").read_text())
    shown = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$installation", ".*").replace("$__rate_interval", "1m")
            body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
            assert body["status"] == "success", (panel["title"], expr, body)
            shown[panel["title"]] = shown.get(panel["title"], []) + body["data"]["result"]
    return shown


def workspace_file(docker_client, rig: Rig, workspace_id: str, path: str) -> str | None:
    """A file of a workspace's /workspace, read on the host (a quota disk or a Docker volume)."""
    from sandbox.deployments.docker import LABEL_INSTALLATION, LABEL_WORKSPACE

    labels = [f"{LABEL_INSTALLATION}={rig.installation_id}", f"{LABEL_WORKSPACE}={workspace_id}"]
    for container in docker_client.containers.list(all=True, filters={"label": labels}):
        for mount in container.attrs.get("Mounts", []):
            if mount.get("Destination") == "/workspace" and Path(mount["Source"], path).is_file():
                return Path(mount["Source"], path).read_text()
    return None
