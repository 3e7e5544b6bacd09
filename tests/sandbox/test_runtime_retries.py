"""The container server client (sandbox/runtime.py) against a stand-in server on a Unix socket: a request
the container server never took is tried again, one it took is not (an exec must not run twice)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from quadracode_ray.interfaces.workspace import WorkspaceUnavailable
from sandbox.container_server import wire
from sandbox.runtime import HEADER, ServerRefused, ServerRuntime

EXEC = wire.Exec(command="echo hi", timeout=5, max_output=1024)


def frame(header: dict) -> bytes:
    raw = json.dumps(header).encode()
    return HEADER.pack(len(raw), 0) + raw


async def read_request(reader: asyncio.StreamReader) -> dict:
    json_len, blob_len = HEADER.unpack(await reader.readexactly(HEADER.size))
    header = json.loads(await reader.readexactly(json_len))
    await reader.readexactly(blob_len)
    return header


SECRET = b"s" * 64


def runtime_for(path: Path, revive=None) -> ServerRuntime:
    return ServerRuntime(lambda: path, revive or (lambda: asyncio.sleep(0)), secret=lambda: SECRET)


async def handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    hello = await read_request(reader)
    writer.write(frame({"ok": True, "nonce": "sn", "proof": wire.proof(SECRET, "server", hello["nonce"], "sn")}))
    prove = await read_request(reader)
    assert prove["proof"] == wire.proof(SECRET, "client", "sn", hello["nonce"])
    writer.write(frame({"ok": True}))


async def stand_in_server(path: Path, *, dying_connections: int, ack_then_die: bool = False,
                          die_in_handshake: int = 0):
    """Hangs up on the first ``die_in_handshake`` connections at their hello, then on the next
    ``dying_connections`` after reading their request without acknowledging it (a container
    server being torn down), then answers (or acknowledges and dies, with ``ack_then_die``)."""
    seen: list[dict] = []
    hellos: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hellos.append(1)
        if len(hellos) <= die_in_handshake:
            await read_request(reader)
            writer.close()
            return
        await handshake(reader, writer)
        request = await read_request(reader)
        seen.append(request)
        if len(seen) <= dying_connections:
            writer.close()
            return
        if request.get("ack"):
            writer.write(frame({"event": "accepted"}))
            if ack_then_die:
                await writer.drain()
                writer.close()
                return
        writer.write(frame({"ok": True, "exit_code": 0, "stdout": "hi", "stderr": "", "duration_ms": 1.0,
                            "timed_out": False, "truncated": False}))
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(serve, path=str(path))
    return server, seen


async def test_a_server_hanging_up_in_the_handshake_is_tried_again(tmp_path: Path):
    path = tmp_path / "exec.sock"
    server, seen = await stand_in_server(path, dying_connections=0, die_in_handshake=3)
    async with server:
        assert (await runtime_for(path).call(EXEC, idempotent=False)).stdout == "hi"
    assert len(seen) == 1


async def test_a_server_that_cannot_prove_the_secret_is_refused(tmp_path: Path):
    path = tmp_path / "exec.sock"

    async def forged(reader, writer):
        await read_request(reader)
        writer.write(frame({"ok": True, "nonce": "sn", "proof": "0" * 64}))
        await writer.drain()

    async with await asyncio.start_unix_server(forged, path=str(path)):
        with pytest.raises(ServerRefused, match="could not prove"):
            await runtime_for(path).call(EXEC, idempotent=False)


async def test_a_server_running_as_another_uid_is_refused_before_anything_is_sent(tmp_path: Path):
    path = tmp_path / "exec.sock"
    seen: list[dict] = []

    async def anyone(reader, writer):
        seen.append(await read_request(reader))

    async with await asyncio.start_unix_server(anyone, path=str(path)):
        runtime = ServerRuntime(lambda: path, lambda: asyncio.sleep(0), secret=lambda: SECRET,
                                server_uid=lambda: os.getuid() + 1)
        with pytest.raises(ServerRefused, match="runs as uid"):
            await runtime.call(EXEC, idempotent=False)
    assert seen == []


async def test_an_exec_is_tried_again_while_a_dying_server_hangs_up(tmp_path: Path):
    path = tmp_path / "exec.sock"
    server, seen = await stand_in_server(path, dying_connections=5)
    revived = []
    runtime = runtime_for(path, revive=lambda: revived.append(1) or asyncio.sleep(0))
    async with server:
        reply = await runtime.call(EXEC, idempotent=False)
    assert reply.stdout == "hi"
    assert len(seen) == 6  # five hang-ups in a row (two tries were not enough under load), then taken


async def test_an_exec_the_server_took_is_never_run_again(tmp_path: Path):
    path = tmp_path / "exec.sock"
    server, seen = await stand_in_server(path, dying_connections=0, ack_then_die=True)
    runtime = runtime_for(path)
    async with server:
        with pytest.raises(WorkspaceUnavailable, match="died during exec"):
            await runtime.call(EXEC, idempotent=False)
    assert len(seen) == 1


async def test_an_idempotent_request_that_reached_a_dying_server_is_sent_once_more_only(tmp_path: Path):
    path = tmp_path / "exec.sock"
    server, seen = await stand_in_server(path, dying_connections=100)  # as if the request itself killed it
    runtime = runtime_for(path)
    async with server:
        with pytest.raises(WorkspaceUnavailable, match="died during stat"):
            await runtime.call(wire.Stat(path="a"), idempotent=True)
    assert len(seen) == 2
