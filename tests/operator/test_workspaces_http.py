"""Workspaces over HTTP against real Docker sandboxes: lifecycle, exec (buffered and streamed),
background processes, files (a 20 MiB binary round trip), tar archives, snapshots, and the
errors (422, 404, 409, 400 on escapes) of refused requests, which change nothing."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
import uuid

import httpx
import pytest

from tests.operator.conftest import sse_events
from tests.polling import eventually


@pytest.fixture(scope="module")
async def workspace(api: str) -> str:
    workspace_id = f"ws-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=api, timeout=180) as client:
        created = await client.post("/workspaces", json={"workspace_id": workspace_id})
        assert created.status_code == 201, created.text
    return workspace_id


async def test_create_is_idempotent_and_refuses_what_it_cannot_honour(http: httpx.AsyncClient, workspace: str):
    again = await http.post("/workspaces", json={"workspace_id": workspace})
    assert again.status_code == 200
    view = again.json()
    assert view["workspace_id"] == workspace and view["status"] == "running"
    assert view["limits"]["network"] is False and view["node"]
    # A different spec for the same id is a conflict; limits over the maxima and bad ids are 422s.
    assert (await http.post("/workspaces", json={"workspace_id": workspace, "network": True})).status_code == 409
    over = await http.post("/workspaces", json={"workspace_id": "ws-big", "memory_mb": 10**6})
    assert over.status_code == 422 and "maximum" in over.json()["detail"]
    assert (await http.post("/workspaces", json={"workspace_id": "../etc"})).status_code == 422
    assert (await http.post("/workspaces", json={"workspace_id": "x", "bogus": 1})).status_code == 422
    listed = {w["workspace_id"] for w in (await http.get("/workspaces")).json()}
    assert workspace in listed and "ws-big" not in listed


async def test_get_shows_status_limits_disk_usage_and_node(http: httpx.AsyncClient, workspace: str):
    view = (await http.get(f"/workspaces/{workspace}")).json()
    assert view["status"] == "running" and view["limits"]["memory_mb"] == 512
    assert isinstance(view["disk_usage_bytes"], int) and view["node"]
    assert (await http.get("/workspaces/no-such-ws")).status_code == 404
    assert (await http.get("/workspaces/bad%20id")).status_code == 400


async def test_exec_buffered_and_its_errors(http: httpx.AsyncClient, workspace: str):
    result = (await http.post(f"/workspaces/{workspace}/exec",
                              json={"command": "echo $GREETING; echo oops >&2; exit 3", "env": {"GREETING": "hi"}}))
    assert result.status_code == 200
    assert result.json() | {"duration_ms": 0} == {"exit_code": 3, "stdout": "hi\n", "stderr": "oops\n",
                                                  "duration_ms": 0, "timed_out": False, "truncated": False}
    timed = (await http.post(f"/workspaces/{workspace}/exec", json={"command": "sleep 5", "timeout": 0.5})).json()
    assert timed["timed_out"] is True and timed["exit_code"] is None
    assert (await http.post(f"/workspaces/{workspace}/exec", json={"command": ""})).status_code == 422
    assert (await http.post(f"/workspaces/{workspace}/exec",
                            json={"command": "true", "timeout": 10**6})).status_code == 422
    assert (await http.post(f"/workspaces/{workspace}/exec",
                            json={"command": "true", "env": {"1BAD": "x"}})).status_code == 422
    escape = await http.post(f"/workspaces/{workspace}/exec", json={"command": "pwd", "cwd": "../../etc"})
    assert escape.status_code == 400 and "outside" in escape.json()["detail"]


async def test_a_streamed_exec_sends_output_before_the_command_ends(api: str, workspace: str):
    # The command prints, then waits for a file the test writes only after the first chunk arrived:
    # the chunk can only have come while the command was still running.
    gate = f"gate-{uuid.uuid4().hex[:6]}"
    command = f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second"
    arrivals: list[tuple[str, dict]] = []
    async with httpx.AsyncClient(base_url=api, timeout=120) as client:
        async with client.stream("POST", f"/workspaces/{workspace}/exec", params={"stream": "true"},
                                 json={"command": command, "timeout": 60}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            buffer = ""
            async for text in response.aiter_text():
                buffer += text
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    for event in sse_events(block + "\n\n"):
                        data = json.loads(event["data"])
                        arrivals.append((event["event"], data))
                        if event["event"] == "output" and "first" in data["data"]:
                            opened = await client.put(f"/workspaces/{workspace}/files/content",
                                                      params={"path": gate}, content=b"")
                            assert opened.status_code == 200
    kinds = [kind for kind, _ in arrivals]
    assert kinds[0] == "output" and kinds[-1] == "result"
    result = arrivals[-1][1]
    assert result["exit_code"] == 0 and result["stdout"] == "first\nsecond\n"
    assert "".join(d["data"] for k, d in arrivals if k == "output") == "first\nsecond\n"


async def test_background_processes(http: httpx.AsyncClient, workspace: str):
    started = await http.post(f"/workspaces/{workspace}/processes",
                              json={"command": "echo up; sleep 300", "env": {"A": "1"}})
    assert started.status_code == 201
    pid = started.json()["process_id"]

    async def output_seen():
        polled = (await http.get(f"/workspaces/{workspace}/processes/{pid}")).json()
        return polled if polled["stdout"] == "up\n" else None

    polled = await eventually(output_seen, timeout=30, what="the process's output")
    assert polled["process"]["status"] == "running"
    later = (await http.get(f"/workspaces/{workspace}/processes/{pid}",
                            params={"stdout_offset": polled["stdout_offset"]})).json()
    assert later["stdout"] == ""
    assert pid in {p["process_id"] for p in (await http.get(f"/workspaces/{workspace}/processes")).json()}
    killed = await http.delete(f"/workspaces/{workspace}/processes/{pid}")
    assert killed.status_code == 200 and killed.json()["status"] == "killed"
    assert (await http.get(f"/workspaces/{workspace}/processes/no-such")).status_code in (400, 404)


async def test_a_20_mib_binary_file_round_trips_byte_for_byte(http: httpx.AsyncClient, workspace: str):
    data = os.urandom(20 << 20)
    put = await http.put(f"/workspaces/{workspace}/files/content", params={"path": "deep/er/blob.bin"}, content=data)
    assert put.status_code == 200, put.text
    assert put.json()["size"] == len(data) and put.json()["type"] == "file"
    got = await http.get(f"/workspaces/{workspace}/files/content", params={"path": "deep/er/blob.bin"})
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.content == data


async def test_files_list_stat_content_type_and_delete(http: httpx.AsyncClient, workspace: str):
    await http.put(f"/workspaces/{workspace}/files/content", params={"path": "site/index.html"},
                   content=b"<script>alert(1)</script>")
    await http.put(f"/workspaces/{workspace}/files/content", params={"path": "site/notes.txt"}, content=b"hello")
    listing = (await http.get(f"/workspaces/{workspace}/files", params={"path": "site"})).json()
    assert listing["info"]["type"] == "dir"
    assert {e["path"].rsplit("/", 1)[-1] for e in listing["entries"]} == {"index.html", "notes.txt"}
    stat = (await http.get(f"/workspaces/{workspace}/files", params={"path": "site/notes.txt"})).json()
    assert stat["info"]["size"] == 5 and stat["entries"] == []
    html = await http.get(f"/workspaces/{workspace}/files/content", params={"path": "site/index.html"})
    assert html.headers["content-type"].startswith("text/plain")  # never run as HTML from the API's origin
    assert html.headers["x-content-type-options"] == "nosniff"
    # Escapes are 400s, missing paths 404s; a refused write creates nothing.
    escape = await http.put(f"/workspaces/{workspace}/files/content", params={"path": "../../etc/evil"}, content=b"x")
    assert escape.status_code == 400 and "outside" in escape.json()["detail"]
    assert (await http.get(f"/workspaces/{workspace}/files/content", params={"path": "/etc/passwd"})).status_code == 400
    assert (await http.get(f"/workspaces/{workspace}/files/content", params={"path": "nope.txt"})).status_code == 404
    assert (await http.get(f"/workspaces/{workspace}/files", params={"path": "nope"})).status_code == 404
    assert (await http.delete(f"/workspaces/{workspace}/files", params={"path": "site"})).status_code == 400
    assert (await http.delete(f"/workspaces/{workspace}/files", params={"path": "site", "recursive": True})
            ).status_code == 200
    assert (await http.get(f"/workspaces/{workspace}/files", params={"path": "site"})).status_code == 404


async def test_a_folder_goes_up_and_down_as_a_tar_archive(http: httpx.AsyncClient, workspace: str):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, body in (("pkg/a.txt", b"alpha"), ("pkg/sub/b.bin", bytes(range(256)))):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(body), int(time.time())
            tar.addfile(info, io.BytesIO(body))
    up = await http.put(f"/workspaces/{workspace}/archive", params={"path": "unpacked"}, content=buffer.getvalue())
    assert up.status_code == 200 and up.json()["files"] >= 2
    assert (await http.get(f"/workspaces/{workspace}/files/content",
                           params={"path": "unpacked/pkg/sub/b.bin"})).content == bytes(range(256))
    down = await http.get(f"/workspaces/{workspace}/archive", params={"path": "unpacked/pkg"})
    assert down.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(down.content)) as tar:
        names = {m.name.rsplit("pkg/", 1)[-1] for m in tar.getmembers() if m.isfile()}
        assert names == {"a.txt", "sub/b.bin"}
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    refused = await http.put(f"/workspaces/{workspace}/archive", content=evil.getvalue())
    assert refused.status_code == 400
    assert (await http.put(f"/workspaces/{workspace}/archive", content=b"not a tar")).status_code == 400


async def test_snapshots_diff_and_restore(http: httpx.AsyncClient, workspace: str):
    await http.put(f"/workspaces/{workspace}/files/content", params={"path": "snap/keep.txt"}, content=b"v1")
    taken = await http.post(f"/workspaces/{workspace}/snapshots", json={"label": "before"})
    assert taken.status_code == 201
    sid = taken.json()["snapshot_id"]
    assert sid in {s["snapshot_id"] for s in (await http.get(f"/workspaces/{workspace}/snapshots")).json()}
    await http.put(f"/workspaces/{workspace}/files/content", params={"path": "snap/keep.txt"}, content=b"v2")
    await http.put(f"/workspaces/{workspace}/files/content", params={"path": "snap/new.txt"}, content=b"n")
    diff = (await http.get(f"/workspaces/{workspace}/snapshots/{sid}/diff")).json()
    assert any(p.endswith("snap/new.txt") for p in diff["added"])
    assert any(p.endswith("snap/keep.txt") for p in diff["modified"])
    restored = await http.post(f"/workspaces/{workspace}/snapshots/{sid}/restore")
    assert restored.status_code == 200
    assert (await http.get(f"/workspaces/{workspace}/files/content", params={"path": "snap/keep.txt"})).content == b"v1"
    assert (await http.get(f"/workspaces/{workspace}/files/content", params={"path": "snap/new.txt"})).status_code == 404
    assert (await http.get(f"/workspaces/{workspace}/snapshots/nope/diff")).status_code == 404


async def test_delete_destroys_the_workspace(http: httpx.AsyncClient):
    workspace_id = f"ws-gone-{uuid.uuid4().hex[:6]}"
    assert (await http.post("/workspaces", json={"workspace_id": workspace_id})).status_code == 201
    deleted = await http.delete(f"/workspaces/{workspace_id}", params={"volumes": True})
    assert deleted.json() == {"workspace_id": workspace_id, "deleted": True, "volumes_removed": True}

    async def gone():
        return (await http.get(f"/workspaces/{workspace_id}")).status_code == 404

    await eventually(gone, timeout=30, what="the deleted workspace to be gone")
    assert (await http.delete("/workspaces/default")).status_code in (404, 409)
