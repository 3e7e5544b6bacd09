"""The v3 thread streaming protocol's events (``client.threads.stream``), made from a thread's
stored run events: the tape the thread's runs published, read in run order.

A :class:`V3Session` is fed the tape run by run (``start_run``, ``ingest`` each stored event,
``end_run`` with the run's end) and returns the wire events, numbered by ``seq``. The same
tape always gives the same events with the same ``seq`` and ``event_id``, so a client that
reconnects with ``since`` (on any replica, after the death of the one it was on) gets exactly
what it missed: the stream replays the thread's tape and sends only ``seq > since``.

A run's events are numbered in a block of its own: run ``n`` of the thread (its
``tape_ordinal``, fixed when it was queued) numbers from ``n * RUN_BLOCK``, and its end (the
root's terminal lifecycle, and what follows it) from the last ``END_RESERVE`` numbers of the
block. So what one run's replay lacks changes no other run's numbers and never hides its end:
a rolled-back run is deleted with its events, and a run that was not stored (not resumable)
replays only its end once its host forgot its events. The SDK only needs ``seq`` to grow; it
stays below 2**53 (exact in JavaScript) for 2**23 runs a thread.

Wire events are ``{"type": "event", "event_id", "seq", "method", "params": {"namespace",
"timestamp", "data"[, "node"]}}``, as the official server sends them. Per run: a root
``lifecycle`` ``running`` first; the run's events (``values``, ``updates``, ``messages``,
``tools``, ``custom``, ``tasks``, ``checkpoints``, subgraph ``lifecycle``); an interrupt as
``input.requested`` plus a root ``lifecycle`` ``interrupted`` (sent, with whatever follows them,
once the run has ended, so a client that reads the state on seeing them finds it committed);
at its end a root ``lifecycle``
``completed`` or ``failed``, after ``completed`` for every subgraph still open. A cancelled run
ends ``failed`` with the reason, on purpose: the official server sends ``interrupted`` (and
nothing for a rollback), which the SDK never takes as the run's end, so its ``thread.values``
and ``thread.output`` wait forever -- the official SDK suite's test_cancel times out on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from serve_app.runs.v3_state import state_payload

CHANNELS = frozenset({"values", "updates", "checkpoints", "messages", "tools", "custom",
                      "lifecycle", "input", "tasks"})
CANCELLED = "Run was cancelled"
RUN_BLOCK = 2**30
END_RESERVE = 2**20


def supported_channel(value: Any) -> bool:
    return isinstance(value, str) and (value in CHANNELS or (value.startswith("custom:") and len(value) > 7))


def _is_prefix(namespace: list[str], prefix: list[str]) -> bool:
    """``prefix`` starts ``namespace``; a prefix segment without ``:`` also matches a segment
    with that name and a task id (``tools`` matches ``tools:<id>``)."""
    if len(prefix) > len(namespace):
        return False
    for segment, candidate in zip(prefix, namespace, strict=False):
        if candidate != segment and (":" in segment or candidate.split(":")[0] != segment):
            return False
    return True


@dataclass(frozen=True)
class Filter:
    """What one subscription wants: channels, namespaces (prefixes) and their depth."""

    channels: frozenset[str]
    namespaces: tuple[tuple[str, ...], ...] | None = None
    depth: int | None = None

    def matches(self, event: dict) -> bool:
        method = event.get("method")
        channel = "input" if method == "input.requested" else method
        params = event.get("params") or {}
        if channel == "custom":
            data = params.get("data")
            name = data.get("name") if isinstance(data, dict) else None
            if "custom" not in self.channels and (not name or f"custom:{name}" not in self.channels):
                return False
        elif channel not in self.channels:
            return False
        if not self.namespaces:
            return True
        namespace = params.get("namespace") or []
        return any(_is_prefix(namespace, list(prefix))
                   and (self.depth is None or len(namespace) - len(prefix) <= self.depth)
                   for prefix in self.namespaces)


def parse_filter(body: Any) -> Filter:
    """A subscription's filter from its JSON (``channels``, ``namespaces``, ``depth``); raises
    ValueError with the reason for a bad one."""
    if not isinstance(body, dict):
        raise ValueError("the subscription must be an object")
    channels = body.get("channels")
    if not isinstance(channels, list) or not channels:
        raise ValueError("channels is required and must be a non-empty array")
    bad = [repr(c) for c in channels if not supported_channel(c)]
    if bad:
        raise ValueError(f"channels contains unsupported entries: {', '.join(bad[:5])}. Allowed: "
                         f"{', '.join(sorted(CHANNELS))}, or any `custom:<name>`.")
    namespaces = body.get("namespaces")
    parsed = None
    if isinstance(namespaces, list):
        parsed = tuple(tuple(ns) for ns in namespaces
                       if isinstance(ns, list) and all(isinstance(s, str) for s in ns)) or None
    depth = body.get("depth")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        depth = None
    return Filter(frozenset(channels), parsed, depth)


def parse_since(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _interrupt_requests(value: Any) -> list[dict]:
    entries = value if isinstance(value, list) else (
        value.get("__interrupt__") if isinstance(value, dict) and isinstance(value.get("__interrupt__"), list) else [])
    out = []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            request = {"interrupt_id": entry["id"]}
            if "value" in entry:
                request["payload"] = entry["value"]
            out.append(request)
    return out


def _without_interrupts(value: Any) -> Any:
    if isinstance(value, dict) and "__interrupt__" in value:
        return {k: v for k, v in value.items() if k != "__interrupt__"}
    return value


class V3Session:
    """Turns a thread's tape into wire events (see the module docstring)."""

    def __init__(self) -> None:
        self.seq = 0
        self._run_id = ""
        self._graph = "root"
        self._source = ""
        self._source_count = 0
        self._out: list[dict] = []
        self._block_end: int | None = None  # where the current run's numbers end
        self._reset_run()

    def _reset_run(self) -> None:
        self._namespaces: dict[tuple[str, ...], list] = {}  # namespace -> [status, graph_name]
        self._wire_started: set[tuple[str, ...]] = set()
        self.pending_interrupts: dict[str, list[str]] = {}
        self._terminal = False
        self._holding = False  # an interrupt was asked: the run's events wait for its end

    # --- the tape --------------------------------------------------------------------------------
    def start_run(self, run_id: str, graph_name: str, ordinal: int | None = None) -> list[dict]:
        """A run begins; ``ordinal``: its ``tape_ordinal`` (None: number on from the last run,
        for a tape whose runs have none)."""
        self._run_id, self._graph = run_id, graph_name or "root"
        self._reset_run()
        if ordinal is not None:
            self.seq = max(self.seq, ordinal * RUN_BLOCK)
            self._block_end = (ordinal + 1) * RUN_BLOCK
        else:
            self._block_end = None
        self._namespaces[()] = ["running", self._graph]
        self._emit("lifecycle", [], {"event": "running", "graph_name": self._graph},
                   event_id=self._synth("lc", "", "running"))
        return self._take()

    def ingest(self, name: str, data: bytes, source_id: str) -> list[dict]:
        """One stored event of the current run (``name`` as the run published it)."""
        self._source, self._source_count = source_id, 0
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        method, *namespace = name.split("|")
        if method == "error":
            message = payload.get("message", str(payload)) if isinstance(payload, dict) else str(payload)
            self._end_of_run()
            self._lifecycle([], "failed", error=message)
        elif isinstance(payload, dict) and payload.get("type") == "event" and isinstance(payload.get("params"), dict):
            self._protocol_event(payload.get("method") or method, payload["params"], namespace)
        else:
            self._legacy_event(method, namespace, payload)
        return self._take()

    def end_run(self, status: str, output: Any, interrupted: bool) -> list[dict]:
        """The run's end: its queue status (success, error, interrupted = cancelled), its output,
        and whether the thread waits on an interrupt now."""
        self._source = ""
        self._holding = False
        if not self._terminal:
            self._end_of_run()
            for namespace in sorted((ns for ns, (st, _) in self._namespaces.items() if ns and st == "started"),
                                    key=len, reverse=True):
                self._lifecycle(list(namespace), "completed")
            has_interrupt = interrupted or (isinstance(output, dict) and bool(output.get("__interrupt__")))
            if status == "success":
                self._lifecycle([], "interrupted" if has_interrupt else "completed")
            elif status == "interrupted":
                self._lifecycle([], "failed", error=CANCELLED)
            else:
                error = output.get("__error__") if isinstance(output, dict) else None
                message = error.get("message") if isinstance(error, dict) else None
                self._lifecycle([], "failed", error=message or f"Run ended with status {status}")
        return self._take()

    # --- normalising -----------------------------------------------------------------------------
    def _protocol_event(self, method: str, params: dict, name_namespace: list[str]) -> None:
        raw = params.get("namespace")
        namespace = list(raw) if isinstance(raw, list) and all(isinstance(s, str) for s in raw) else name_namespace
        data = params.get("data")
        if method == "checkpoints":
            if isinstance(data, dict) and isinstance(data.get("id"), str):
                self._emit("checkpoints", namespace, data,
                           event_id=self._synth("checkpoint", "\0".join(namespace), data["id"]))
            return
        if method == "lifecycle":
            self._upstream_lifecycle(namespace, data)
            return
        if namespace:
            self._register(namespace)
        node = params.get("node") if isinstance(params.get("node"), str) and params.get("node") else None
        if method == "updates":
            update_node = node or (data.get("node") if isinstance(data, dict) else None)
            if isinstance(data, dict) and "__interrupt__" in data and len(data) == 1:
                self._input_requested(namespace, _interrupt_requests(data["__interrupt__"]))
                return
            if update_node == "__interrupt__":
                self._input_requested(namespace, _interrupt_requests(data.get("values")))
                return
        elif method == "values":
            requests = _interrupt_requests(data)
            data = _without_interrupts(data)
            interrupts = params.get("interrupts")
            if isinstance(interrupts, list) and interrupts:
                self._input_requested(namespace, _interrupt_requests(interrupts))
            if requests:
                self._input_requested(namespace, requests)
        elif method == "tools" and isinstance(data, dict) and "__node" in data:
            data = dict(data)
            candidate = data.pop("__node")
            node = candidate if isinstance(candidate, str) and candidate else node
        timestamp = params.get("timestamp") if isinstance(params.get("timestamp"), int) else None
        self._emit(method, namespace, data, node=node, timestamp=timestamp)
        if method == "tools" and isinstance(data, dict):
            self._tool_output_message(namespace, data)
        if method == "updates" and isinstance(data, dict) and node is None and len(data) == 1:
            node = next(iter(data))
        if method == "updates" and node:
            self._child_completed(namespace, node)

    def _legacy_event(self, method: str, namespace: list[str], data: Any) -> None:
        """A run started by the REST routes (its stream modes' shapes) on the same thread."""
        if method in ("values", "updates"):
            if method == "updates" and isinstance(data, dict) and "__interrupt__" in data:
                self._input_requested(namespace, _interrupt_requests(data["__interrupt__"]))
                return
            self._input_requested(namespace, _interrupt_requests(data))
            cleaned = _without_interrupts(data)
            if not isinstance(cleaned, dict) or cleaned:
                self._emit(method, namespace, cleaned)
        elif method == "custom":
            self._emit("custom", namespace, {"payload": data})
        elif method in ("tasks", "checkpoints"):
            self._emit(method, namespace, data)

    def _upstream_lifecycle(self, namespace: list[str], data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            return
        announced = data.get("namespace")
        if isinstance(announced, list) and all(isinstance(s, str) for s in announced) and len(announced) > len(namespace):
            namespace = list(announced)
        if not namespace:
            return  # the root's lifecycle is the session's own
        event = data["event"]
        if event == "started":
            key = tuple(namespace)
            if key not in self._wire_started:
                self._wire_started.add(key)
                name = data.get("graph_name")
                self._set(namespace, "started", name if isinstance(name, str) else None)
                self._emit("lifecycle", namespace, data)
        elif event in ("running", "completed", "failed", "interrupted"):
            name, error, cause = data.get("graph_name"), data.get("error"), data.get("cause")
            self._lifecycle(namespace, event, graph_name=name if isinstance(name, str) else None,
                            error=error if isinstance(error, str) else None,
                            cause=cause if isinstance(cause, dict) else None)
        else:
            self._register(namespace)

    def _input_requested(self, namespace: list[str], requests: list[dict]) -> None:
        emitted = False
        for request in requests:
            interrupt_id = request["interrupt_id"]
            if interrupt_id in self.pending_interrupts:
                continue
            if not self._terminal:
                self._end_of_run()
            self.pending_interrupts[interrupt_id] = list(namespace)
            self._emit("input.requested", namespace, request,
                       event_id=self._synth("input", "\0".join(namespace), interrupt_id))
            emitted = True
        if emitted:
            # The run stopped and waits for input.respond: its root is interrupted now. These
            # events, and any the run sends after them, go out at the run's end (in this order):
            # the SDK reads the thread's state on seeing them, and the run's checkpoints (written
            # in the background) and its row are all committed only then.
            self._lifecycle([], "interrupted")
            self._holding = True

    def _tool_output_message(self, namespace: list[str], data: dict) -> None:
        """A finished tool's output also as a ``tool`` message (as the official server)."""
        output = data.get("output")
        if data.get("event") != "tool-finished" or not isinstance(output, dict):
            return
        call_id = data.get("tool_call_id") if isinstance(data.get("tool_call_id"), str) else None
        call_id = call_id or (output.get("tool_call_id") if isinstance(output.get("tool_call_id"), str) else None)
        message_id = output.get("id") if isinstance(output.get("id"), str) and output.get("id") else (
            f"tool-{call_id}" if call_id else None)
        if message_id is None:
            return
        content = output.get("content")
        if not isinstance(content, str):
            content = "" if content is None else orjson.dumps(content).decode()
        start: dict[str, Any] = {"event": "message-start", "role": "tool", "id": message_id}
        if call_id is not None:
            start["tool_call_id"] = call_id
        where = [*namespace, f"tools:{call_id}"] if call_id is not None else namespace
        text = {"type": "text", "text": content}
        for item in (start, {"event": "content-block-start", "index": 0, "content": {"type": "text", "text": ""}},
                     {"event": "content-block-delta", "index": 0, "content": text},
                     {"event": "content-block-finish", "index": 0, "content": text},
                     {"event": "message-finish", "metadata": {}}):
            self._emit("messages", where, item)

    # --- namespaces ------------------------------------------------------------------------------
    def _set(self, namespace: list[str], status: str, graph_name: str | None = None) -> None:
        key = tuple(namespace)
        existing = self._namespaces.get(key)
        name = graph_name or (existing[1] if existing else None) or (
            self._graph if not namespace else namespace[-1].split(":")[0])
        self._namespaces[key] = [status, name]

    def _register(self, namespace: list[str]) -> None:
        for length in range(1, len(namespace) + 1):
            info = self._namespaces.get(tuple(namespace[:length]))
            if info is None or info[0] != "started":
                self._set(namespace[:length], "started")

    def _child_completed(self, parent: list[str], node: str) -> None:
        if node.startswith("__"):
            return
        for key, (status, _) in list(self._namespaces.items()):
            if (len(key) == len(parent) + 1 and status == "started" and list(key[:-1]) == parent
                    and (key[-1] == node or key[-1].startswith(f"{node}:"))):
                self._lifecycle(list(key), "completed")
                return

    def _lifecycle(self, namespace: list[str], status: str, *, graph_name: str | None = None,
                   error: str | None = None, cause: dict | None = None) -> None:
        key = tuple(namespace)
        if namespace and key not in self._namespaces:
            self._register(namespace)
        current = self._namespaces.get(key)
        name = graph_name or (current[1] if current else None) or (
            self._graph if not namespace else namespace[-1].split(":")[0])
        if current is not None and current == [status, name] and error is None and cause is None:
            return
        self._namespaces[key] = [status, name]
        data: dict[str, Any] = {"event": status, "graph_name": name}
        if error is not None:
            data["error"] = error
        if cause is not None:
            data["cause"] = cause
        self._emit("lifecycle", namespace, data, event_id=self._synth("lc", "\0".join(namespace), status))

    def tree(self, namespace: tuple[str, ...] = ()) -> dict:
        """The current run's namespaces as a tree (``agent.getTree``)."""
        status, name = self._namespaces.get(namespace) or [
            "started", self._graph if not namespace else namespace[-1].split(":")[0]]
        node: dict[str, Any] = {"namespace": list(namespace), "status": status, "graph_name": name}
        children = sorted(k for k in self._namespaces if len(k) == len(namespace) + 1 and k[:-1] == namespace)
        if children:
            node["children"] = [self.tree(child) for child in children]
        return node

    # --- events ----------------------------------------------------------------------------------
    def _end_of_run(self) -> None:
        """The run's root ends (failed, interrupted, or its end): number on in the block's end
        reserve, where a replay that lacks some of the run's events numbers its end too."""
        self._terminal = True
        if self._block_end is not None:
            self.seq = max(self.seq, self._block_end - END_RESERVE)

    def _synth(self, *parts: str) -> str:
        return f"synth:{self._run_id}:{'|'.join(parts)}"

    def _emit(self, method: str, namespace: list[str], data: Any, *, node: str | None = None,
              timestamp: int | None = None, event_id: str | None = None) -> None:
        self.seq += 1
        if method.startswith("custom:") and len(method) > 7:
            data, method = {"name": method[7:], "payload": data}, "custom"
        if method in ("values", "updates"):
            data = state_payload(data)  # the protocol's messages and content blocks, no __interrupt__
        params: dict[str, Any] = {"namespace": namespace, "timestamp": timestamp or int(time.time() * 1000),
                                  "data": data}
        if node is not None:
            params["node"] = node
        if event_id is None:
            if self._source:
                event_id = self._source if not self._source_count else f"{self._source}.{self._source_count}"
                self._source_count += 1
            else:
                event_id = self._synth(str(self.seq))
        self._out.append({"type": "event", "event_id": event_id, "seq": self.seq, "method": method,
                          "params": params})

    def _take(self) -> list[dict]:
        if self._holding:
            return []
        out, self._out = self._out, []
        return out
