"""A run of the v3 thread streaming protocol (``client.threads.stream``): the graph streams
LangGraph's own protocol events (``astream_events(version="v3")``) and each is published as
the run's event ``<method>[|<namespace>...]`` with the protocol event as its data, as the
official server stores them. The API's v3 session turns a
thread's stored events into the wire events, so a replay is the same tape.

As the official server, ``messages`` events keep only the content-block shape (a chat
model's streamed message); a node's whole returned message is in the ``values``/``updates``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from runs.stream import RunStream, dumps

# The configurable key the API sets on a v3 run (the official server's name for it), to the
# run's id.
V3_MARKER = "__event_streaming_v2"


def _content_block_event(data: Any) -> dict | None:
    """The ``message-start``/``content-block-*``/``message-finish`` dict of a messages event
    (alone or as the ``(event, metadata)`` pair the mux sends), else None."""
    if isinstance(data, dict) and isinstance(data.get("event"), str):
        return data
    if isinstance(data, (list, tuple)) and len(data) == 2 and isinstance(data[0], dict) \
            and isinstance(data[0].get("event"), str):
        return data[0]
    return None


async def protocol_chunks(graph: Any, graph_input: Any, config: dict, options: dict,
                          stream: RunStream) -> AsyncIterator[tuple[tuple, str, Any]]:
    """Publish the run's protocol events; yield ``((), mode, data)`` for the root ``values``
    and ``updates`` so the caller sees the run's last values and its interrupts."""
    options = {k: v for k, v in options.items() if k not in ("stream_mode", "subgraphs")}
    run_stream = await graph.astream_events(graph_input, config, version="v3", **options)
    async with run_stream:
        async for event in run_stream:
            method = event.get("method") or ""
            params = event.get("params") or {}
            namespace = [str(part) for part in params.get("namespace") or []]
            if method == "messages":
                block = _content_block_event(params.get("data"))
                if block is None:
                    continue
                params = {**params, "data": block}
                event = {**event, "params": params}
            await stream.publish("|".join([method, *namespace]), dumps(event))
            if namespace or method not in ("values", "updates"):
                continue
            data = params.get("data")
            interrupts = params.get("interrupts")
            if method == "values" and interrupts and isinstance(data, dict):
                data = {**data, "__interrupt__": interrupts}
            yield (), method, data
