"""Everything that comes out of a container is hostile: compressed snapshots are refused, not
inflated; streamed bodies and replies are capped; malformed replies are typed errors; writes
and reads stream instead of being copied whole on the host."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from quadracode_ray.interfaces.workspace import WorkspaceError, WorkspaceInvalidRequest
from sandbox.container_server import wire
from sandbox.deployments.docker import DockerDeployment, DockerDeploymentConfig
from sandbox.runtime import HEADER, BytesSink, HostileReply
from sandbox.service import WorkspaceService
from sandbox.snapshots import SnapshotStore, tar_manifest
from tests.sandbox.test_runtime_retries import frame, handshake, read_request, runtime_for


def gzip_bomb() -> bytes:
    """~1 MB of gzip that inflates to a 1 GiB tar member."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9) as gz:
        info = tarfile.TarInfo("bomb")
        info.size = 1 << 30
        gz.write(info.tobuf())
        zeros = b"\0" * (1 << 20)
        for _ in range(1024):
            gz.write(zeros)
    return raw.getvalue()


def test_a_compressed_snapshot_is_refused_not_inflated(tmp_path: Path):
    bomb = tmp_path / "bomb.tar"
    bomb.write_bytes(gzip_bomb())
    assert bomb.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(WorkspaceError, match="not an uncompressed tar"):
            tar_manifest(bomb)
        assert tracemalloc.get_traced_memory()[1] < 16 << 20
    finally:
        tracemalloc.stop()


def test_a_snapshot_over_its_cap_is_refused_and_leaves_nothing(tmp_path: Path):
    store = SnapshotStore(tmp_path, "ws")
    sink = store.sink(limit=10)
    sink.reset()
    sink.write(b"0123456789")
    with pytest.raises(WorkspaceInvalidRequest, match="larger than the limit"):
        sink.write(b"x")
    sink.discard()
    assert list((tmp_path / "ws").iterdir()) == [] and store.list() == []


def test_a_download_over_its_cap_is_refused():
    sink = BytesSink(4, "download")
    sink.write(b"1234")
    with pytest.raises(WorkspaceInvalidRequest, match="larger than the limit of 4 bytes"):
        sink.write(b"5")


async def _hostile_server(path: Path, answer: bytes):
    async def serve(reader, writer):
        await handshake(reader, writer)
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        await reader.read()  # held open: the host must not wait for more

    return await asyncio.start_unix_server(serve, path=str(path))


@pytest.mark.parametrize(("answer", "match"), [
    (HEADER.pack(10, 4 << 30), "oversized frame"),                      # a "4 GiB" reply
    (HEADER.pack(0, (1 << 20) + 1), "oversized frame"),                  # a chunk past the chunk size
    (frame({"ok": True, "pid": "1", "version": "v"}), "malformed reply"),  # wrong type
    (frame({"ok": True, "pid": 1, "version": "v", "extra": 1}), "malformed reply"),
    (HEADER.pack(3, 0) + b"{{{", "malformed frame"),
    (frame({"event": "surprise"}), "unexpected frame"),
    (HEADER.pack(0, 3) + b"abc", "body"),                                # a body to a request with none
])
async def test_hostile_replies_are_typed_errors(tmp_path: Path, answer: bytes, match: str):
    path = tmp_path / "exec.sock"
    async with await _hostile_server(path, answer):
        with pytest.raises(HostileReply, match=match):
            await runtime_for(path).call(wire.Ping())


async def test_an_error_reply_keeps_its_message_short(tmp_path: Path):
    path = tmp_path / "exec.sock"
    answer = frame({"ok": False, "error": {"kind": "invalid", "message": "x" * 100_000}})
    async with await _hostile_server(path, answer):
        with pytest.raises(WorkspaceInvalidRequest) as caught:
            await runtime_for(path).call(wire.Ping())
    assert len(str(caught.value)) == 4000
    json.dumps(str(caught.value))


async def test_big_writes_and_reads_stream_through_the_host(sandbox_settings):
    settings = sandbox_settings()
    service = WorkspaceService(DockerDeployment("hostile-io", DockerDeploymentConfig.from_settings(settings)), settings)
    await service.ensure()
    data = b"x" * (64 << 20)
    try:
        tracemalloc.start()
        await service.write_file("big.bin", data)
        write_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        back = await service.read_file("big.bin")
        read_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert back == data
        assert write_peak < 8 << 20  # sent as chunk views of the caller's bytes: no copy
        assert read_peak < 3 * len(data)  # the bytes returned, plus the buffer they grew in
    finally:
        await service.destroy(remove_volume=True)
        service.close()
