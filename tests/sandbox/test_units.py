"""Pure logic of the sandbox, without Docker or Ray: the server's process handling (run on
the host, it is plain stdlib), snapshot storage and diffs, request models."""

from __future__ import annotations

import hashlib

import pytest

from quadracode_ray.interfaces.workspace import (
    SnapshotNotFound,
    WorkspaceError,
    WorkspaceInvalidRequest,
)
from sandbox.container_server import procs
from sandbox.container_server.wire import ManifestEntry
from sandbox.events import FanOutSink, InMemoryEventSink
from sandbox.models import ExecRequest, SandboxEvent, WorkspaceSpec, validate_workspace_id
from sandbox.snapshots import SnapshotStore, diff_manifests, tar_manifest
from sandbox.testing.conformance import tar_of


def test_run_captures_output_and_exit_code(tmp_path):
    result = procs.run("echo out; echo err >&2; exit 7", str(tmp_path), {"X": "1"}, 10, 1024, 0.5)
    assert (result["exit_code"], result["stdout"], result["stderr"], result["timed_out"]) == (7, "out\n", "err\n", False)


def test_run_kills_a_sigterm_ignoring_tree_at_the_timeout(tmp_path):
    marker = tmp_path / "late"
    result = procs.run(f"trap '' TERM; (trap '' TERM; sleep 30; touch {marker}) & sleep 30", str(tmp_path), {}, 0.3, 1024, 0.2)
    assert result["timed_out"] and result["exit_code"] is None
    assert result["duration_ms"] < 5000


def test_run_caps_output_per_stream(tmp_path):
    result = procs.run("head -c 100000 /dev/zero; echo e >&2", str(tmp_path), {}, 10, 1000, 0.5)
    assert result["truncated"] and len(result["stdout"]) == 1000 and result["stderr"] == "e\n"


def test_signal_deaths_read_like_a_shell():
    assert procs.shell_code(-9) == 137 and procs.shell_code(3) == 3 and procs.shell_code(None) is None


def test_invalid_env_names_are_refused(tmp_path):
    with pytest.raises(ValueError):
        procs.spawn("true", str(tmp_path), {"A=B": "x"})
    with pytest.raises(ValueError):
        ExecRequest(command="true", env={"1X": "y"})
    with pytest.raises(ValueError):  # Python's `$` matches before a final newline: the whole name must match
        ExecRequest(command="true", env={"X\n": "y"})


def test_workspace_ids_are_validated():
    assert validate_workspace_id("proj-1.v2_x") == "proj-1.v2_x"
    for bad in ("", "../x", "a/b", "-x", "x" * 64, "sp ace", "ws\n"):
        with pytest.raises(WorkspaceInvalidRequest):
            validate_workspace_id(bad)
    with pytest.raises(ValueError):
        WorkspaceSpec(unknown=True)


def test_a_cpu_limit_under_dockers_least_is_refused_before_any_container():
    """cpus=6.1e-05 reached Docker, whose kernel refused the 6 µs CFS quota: the workspace failed
    to start (a 503). Under 0.01 it is a validation error, and the API's schema says so."""
    from serve_app.routes.workspaces import WorkspaceCreate

    assert WorkspaceSpec(cpus=0.01).cpus == 0.01
    with pytest.raises(ValueError, match="greater than or equal to 0.01"):
        WorkspaceSpec(cpus=6.1e-05)
    with pytest.raises(ValueError):
        WorkspaceCreate(workspace_id="w", cpus=0.001)
    cpus = WorkspaceCreate.model_json_schema()["properties"]["cpus"]["anyOf"][0]
    assert cpus["minimum"] == 0.01




def test_snapshot_store_roundtrip_and_corruption(tmp_path):
    store = SnapshotStore(tmp_path, "ws")
    data = tar_of({"a.txt": b"A"})
    info = store.save(data, "first")
    assert info.sha256 == hashlib.sha256(data).hexdigest() and info.size == len(data)
    assert [s.snapshot_id for s in store.list()] == [info.snapshot_id]
    assert store.load(info.snapshot_id)[1].read_bytes() == data
    (tmp_path / "ws" / f"{info.snapshot_id}.tar").write_bytes(b"tampered")
    with pytest.raises(WorkspaceError, match="corrupt"):
        store.load(info.snapshot_id)
    for bad in ("../../etc/passwd", "nope", f"{info.snapshot_id}\n"):
        with pytest.raises(SnapshotNotFound):
            store.load(bad)
    store.delete(info.snapshot_id)
    assert store.list() == []


def test_diff_of_manifests():
    then = tar_manifest(tar_of({"same": b"1", "changed": b"old", "gone": b"x"}))
    now = {"same": ManifestEntry(type="file", size=1, sha256=hashlib.sha256(b"1").hexdigest()),
           "changed": ManifestEntry(type="file", size=3, sha256=hashlib.sha256(b"new").hexdigest()),
           "added": ManifestEntry(type="file", size=0, sha256=hashlib.sha256(b"").hexdigest())}
    diff = diff_manifests("s", then, now)
    assert (diff.added, diff.removed, diff.modified) == (["added"], ["gone"], ["changed"])


def test_fan_out_sink_survives_a_failing_sink():
    class Broken:
        def emit(self, event):
            raise RuntimeError("bus down")

    kept = InMemoryEventSink(capacity=2)
    sink = FanOutSink(Broken(), kept, None)
    for op in ("a", "b", "c"):
        sink.emit(SandboxEvent(workspace_id="w", operation=op, duration_ms=1, outcome="ok", at="2026-01-01T00:00:00Z"))
    assert [e.operation for e in kept.events()] == ["b", "c"]


def test_a_client_hanging_up_kills_the_command(tmp_path):
    import socket
    import subprocess
    import uuid

    marker = f"qr-unit-{uuid.uuid4().hex[:8]}"
    ours, theirs = socket.socketpair()
    theirs.close()  # the client is gone before the command can finish
    with pytest.raises(procs.ClientGone):
        procs.run(f"exec -a {marker} sleep 30", str(tmp_path), {}, 60, 1024, 0.2, client=ours)
    ours.close()
    running = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert marker not in running


def test_docker_deployment_config_is_built_from_settings_in_one_place(tmp_path):
    from quadracode_ray.config import Settings
    from sandbox.deployments.docker import DockerDeployment, DockerDeploymentConfig

    settings = Settings(_env_file=None, data_dir=tmp_path, sandbox_installation_id="inst", workspace_image="img:1",
                        sandbox_memory_mb=300, sandbox_cpus=1.5, sandbox_pids_limit=99)
    config = DockerDeploymentConfig.from_settings(settings)
    assert (config.installation_id, config.image, config.run_root) == ("inst", "img:1", tmp_path / "sandbox" / "inst")
    assert config.limits(WorkspaceSpec()).model_dump() == {"memory_mb": 300, "cpus": 1.5, "pids_limit": 99, "network": False,
                                                           "disk_mb": 8192}
    assert config.limits(WorkspaceSpec(memory_mb=128, network=True)).memory_mb == 128
    deployment = DockerDeployment("ws-1", config)  # no Docker call yet: an actor constructs while Docker is down
    assert deployment.socket_path == tmp_path / "sandbox" / "inst" / "ws-1" / "run" / "exec.sock"
    assert deployment.container_name == deployment.volume_name == "qr-inst-ws-ws-1"
    with pytest.raises(ValueError, match="extra"):
        DockerDeploymentConfig(**config.model_dump(), data_dir=tmp_path)


def test_an_exited_background_job_comes_with_all_its_output(tmp_path):
    # When the process has exited, what it wrote last may not have been read from its pipes yet.
    for _ in range(50):
        job = procs.Background("echo begin; echo oops >&2", str(tmp_path), {}, 1 << 20)
        job.proc.wait()
        polled = job.poll(0, 0)
        assert polled["process"]["status"] == "exited"
        assert (polled["stdout"], polled["stderr"]) == ("begin\n", "oops\n")
