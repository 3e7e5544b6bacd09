"""SSE framing and heartbeats (pure logic; the HTTP behaviour is in test_runs_stream.py)."""

from __future__ import annotations

import asyncio

from serve_app.runs import sse


def test_frames_use_crlf_and_optional_ids() -> None:
    assert sse.frame("values", b'{"a":1}') == b'event: values\r\ndata: {"a":1}\r\n\r\n'
    assert sse.frame("values", b"{}", "7") == b"event: values\r\ndata: {}\r\nid: 7\r\n\r\n"
    assert sse.frame("bad\r\nname", b"{}") == b"event: badname\r\ndata: {}\r\n\r\n"


async def test_heartbeats_fill_silences(monkeypatch) -> None:
    monkeypatch.setattr(sse, "HEARTBEAT_INTERVAL_S", 0.01)
    release = asyncio.Event()

    async def source():
        yield b"first"
        await release.wait()
        yield b"last"

    out = []
    async for item in sse.with_heartbeats(source()):
        out.append(item)
        if out.count(sse.HEARTBEAT) == 2:
            release.set()
    assert out[0] == b"first" and out[-1] == b"last"
    assert out.count(sse.HEARTBEAT) >= 2
    assert sse.HEARTBEAT == b": heartbeat\r\n\r\n"


def test_stream_mode_filter_keeps_subgraph_and_message_events() -> None:
    assert sse._wanted("updates|child:1", ["updates"])
    assert sse._wanted("messages/partial", ["messages"])
    assert sse._wanted("messages", ["messages-tuple"])
    assert not sse._wanted("values", ["updates"])
    assert sse._wanted("error", ["updates"])
