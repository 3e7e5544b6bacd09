"""The same-node channel (actors/local_channel.py) and the envelope codec on it (actors/delivery.py):
real Unix sockets and asyncio, no Ray."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from pathlib import Path

import pytest

from actors.delivery import (
    DeliveryFailed,
    DeliveryReceipt,
    Inbox,
    InboxOverloaded,
    MemoryInboxStore,
    _deliver_over_channel,
    serve_deliveries,
)
from actors.local_channel import (
    MAX_BODY,
    ChannelClient,
    ChannelPool,
    ChannelServer,
    ChannelUnavailable,
    socket_path,
    sweep_now_and_then,
    sweep_stale_sockets,
)
from quadracode_ray.envelope import Envelope


@pytest.fixture
def channel_dir(tmp_path: Path) -> Path:
    # Socket paths are short by law (~100 bytes); pytest's tmp_path can be longer.
    short = Path("/tmp") / f"qrch-{os.getpid()}-{tmp_path.name[-12:]}"
    yield short
    for path in sorted(short.rglob("*"), reverse=True):
        path.unlink() if not path.is_dir() else path.rmdir()
    if short.exists():
        short.rmdir()


def path_in(channel_dir: Path, name: str = "echo") -> Path:
    return socket_path(channel_dir, "node-1", name)


async def echo(body: bytes) -> bytes:
    return b"echo:" + body


async def test_requests_are_answered_over_one_connection_in_any_order(channel_dir: Path):
    async def slow_for_small_numbers(body: bytes) -> bytes:
        await asyncio.sleep(0.001 * (20 - int(body)))  # answers leave in the reverse order: a test of matching
        return body * 2

    server = await ChannelServer(path_in(channel_dir), slow_for_small_numbers).start()
    client = ChannelClient(server.path)
    try:
        answers = await asyncio.gather(*(client.request(str(n).encode()) for n in range(20)))
        assert answers == [str(n).encode() * 2 for n in range(20)]
        assert server.served == 20
        assert len(server._connections) == 1
    finally:
        await client.close()
        await server.close()
    assert not server.path.exists()  # closing removes the socket


async def test_no_listener_is_unavailable(channel_dir: Path):
    missing = ChannelClient(path_in(channel_dir, "nobody"))
    with pytest.raises(ChannelUnavailable):
        await missing.request(b"x")
    # A socket file left behind by a process that died: connecting is refused.
    stale = path_in(channel_dir, "dead")
    stale.parent.mkdir(parents=True, mode=0o700)
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(stale))
    leftover.close()
    with pytest.raises(ChannelUnavailable):
        await ChannelClient(stale).request(b"x")


async def test_a_request_in_flight_when_the_server_goes_is_unavailable_and_a_successor_is_found(channel_dir: Path):
    entered = asyncio.Event()

    async def hang(body: bytes) -> bytes:
        entered.set()
        await asyncio.Event().wait()
        return b""

    path = path_in(channel_dir)
    first = await ChannelServer(path, hang).start()
    client = ChannelClient(path)
    pending = asyncio.ensure_future(client.request(b"lost?"))
    await asyncio.wait_for(entered.wait(), 5)
    await first.close()
    with pytest.raises(ChannelUnavailable):
        await asyncio.wait_for(pending, 5)
    successor = await ChannelServer(path, echo).start()  # e.g. the orchestrator after a restart
    try:
        assert await client.request(b"again") == b"echo:again"
    finally:
        await client.close()
        await successor.close()


async def test_a_handler_bug_breaks_the_connection_instead_of_leaving_the_sender_waiting(channel_dir: Path):
    async def buggy(body: bytes) -> bytes:
        raise RuntimeError("bug")

    server = await ChannelServer(path_in(channel_dir), buggy).start()
    try:
        with pytest.raises(ChannelUnavailable):
            await asyncio.wait_for(ChannelClient(server.path).request(b"x"), 5)
    finally:
        await server.close()


async def test_a_corrupt_frame_closes_only_its_connection(channel_dir: Path):
    server = await ChannelServer(path_in(channel_dir), echo).start()
    good = ChannelClient(server.path)
    try:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        writer.write(struct.pack("!QI", 1, MAX_BODY + 1))
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing answered
        writer.close()
        assert await good.request(b"fine") == b"echo:fine"
    finally:
        await good.close()
        await server.close()


async def test_a_body_too_big_for_a_frame_is_left_to_the_other_path(channel_dir: Path, monkeypatch):
    monkeypatch.setattr("actors.local_channel.MAX_BODY", 64)
    server = await ChannelServer(path_in(channel_dir), echo).start()
    client = ChannelClient(server.path)
    try:
        with pytest.raises(ChannelUnavailable, match="more than a frame holds"):
            await client.request(b"x" * 65)  # a ValueError would read as 'no such actor' in send()
        assert await client.request(b"small") == b"echo:small"
    finally:
        await client.close()
        await server.close()


async def test_the_directory_must_be_private(channel_dir: Path):
    path = path_in(channel_dir)
    path.parent.mkdir(parents=True, mode=0o755)
    os.chmod(path.parent, 0o755)  # whatever the umask made of it
    with pytest.raises(PermissionError, match="0700"):
        await ChannelServer(path, echo).start()


def test_socket_paths_are_short_and_distinct():
    a, b = socket_path("/tmp/x", "node", "a" * 500), socket_path("/tmp/x", "node", "b")
    assert a != b and len(str(a)) < 100
    assert socket_path("/tmp/x", "other-node", "b").parent != b.parent
    with pytest.raises(ValueError, match="shorter directory"):
        socket_path("/tmp/" + "d" * 80, "node", "b")


async def test_the_pool_is_bounded(channel_dir: Path):
    servers = [await ChannelServer(path_in(channel_dir, f"s{n}"), echo).start() for n in range(3)]
    pool = ChannelPool(max_clients=2)
    try:
        for server in servers:
            assert await pool.request(server.path, b"x") == b"echo:x"
        assert pool.stats() == {"requests": 3, "unavailable": 0, "clients": 2}
    finally:
        for server in servers:
            await server.close()


# --- envelopes on the channel: the same answers a Ray call gives -------------------------------------
class NodeHandles:
    """What serve_deliveries and the sender need of a HandleCache: paths on one node, a pool."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.channels = ChannelPool()

    def channel_path(self, address: str) -> Path:
        return socket_path(self.directory, "node-1", address)


class StaleHandles(NodeHandles):
    def __init__(self, path: Path):
        super().__init__(path.parent)
        self.path = path

    def channel_path(self, address: str) -> Path:
        return self.path


async def test_envelopes_are_accepted_once_and_errors_keep_their_meaning(channel_dir: Path):
    handled: list[str] = []

    async def handler(envelope: Envelope) -> None:
        handled.append(envelope.id)

    inbox = Inbox("agent-1", MemoryInboxStore(), handler, lane_of=lambda e: "tasks", max_attempts=1,
                  backoff_s=0, publish=lambda e: None)
    inbox.open()
    handles = NodeHandles(channel_dir)
    server = await serve_deliveries(handles, "agent-1", inbox.deliver)
    assert server is not None
    try:
        envelope = Envelope(sender="orchestrator", recipient="agent-1", kind="task", payload={"n": 1})
        assert await _deliver_over_channel(handles, envelope) == DeliveryReceipt(envelope_id=envelope.id,
                                                                                status="accepted")
        assert (await _deliver_over_channel(handles, envelope)).status == "duplicate"
        await inbox.wait_idle()
        assert handled == [envelope.id]

        with pytest.raises(ValueError, match="not 'agent-1'"):  # a socket reached under another's name
            await _deliver_over_channel(StaleHandles(handles.channel_path("agent-1")),
                                        Envelope(sender="o", recipient="agent-2", kind="task"))
        answer = await handles.channels.request(server.path, b'{"sender": "o"}')
        assert b'"error": "invalid"' in answer and b"recipient" in answer  # not an envelope
        inbox.backlogged = lambda: True
        with pytest.raises(InboxOverloaded):
            await _deliver_over_channel(handles, Envelope(sender="o", recipient="agent-1", kind="task"))
    finally:
        await server.close()


async def test_a_failing_deliver_is_raised_at_the_sender_and_no_listener_means_another_path(channel_dir: Path):
    async def broken(envelope: Envelope) -> DeliveryReceipt:
        raise OSError("disk full")

    handles = NodeHandles(channel_dir)
    envelope = Envelope(sender="o", recipient="agent-1", kind="task")
    assert await _deliver_over_channel(handles, envelope) is None  # nobody listens: the caller calls Ray
    server = await serve_deliveries(handles, "agent-1", broken)
    try:
        with pytest.raises(DeliveryFailed, match="OSError: disk full"):
            await _deliver_over_channel(handles, envelope)
    finally:
        await server.close()


async def test_sweeping_removes_only_old_sockets_nobody_listens_on(channel_dir: Path):
    live = await ChannelServer(path_in(channel_dir, "live"), echo).start()
    try:
        stale, fresh_stale = path_in(channel_dir, "stale"), path_in(channel_dir, "just-bound")
        for path in (stale, fresh_stale):
            leftover = socket.socket(socket.AF_UNIX)
            leftover.bind(str(path))
            leftover.close()
        gone_node = socket_path(channel_dir, "node-gone", "x").parent
        gone_node.mkdir(mode=0o700)
        old = time.time() - 3600
        for path in (live.path, stale, gone_node):
            os.utime(path, (old, old))

        assert sweep_stale_sockets(channel_dir, older_than_s=60) == 1
        assert live.path.exists() and fresh_stale.exists()  # listening; too young to judge
        assert not stale.exists() and not gone_node.exists()
        client = ChannelClient(live.path)
        assert await client.request(b"still") == b"echo:still"
        await client.close()

        def leave_stale_socket() -> None:
            leftover = socket.socket(socket.AF_UNIX)
            leftover.bind(str(stale))
            leftover.close()
            os.utime(stale, (old, old))

        leave_stale_socket()
        assert sweep_now_and_then(channel_dir) == 1  # no marker yet: it sweeps
        leave_stale_socket()
        assert sweep_now_and_then(channel_dir) == 0 and stale.exists()  # swept a moment ago: not again yet
    finally:
        await live.close()
