"""Execute one API run: build the graph, stream it, publish each chunk as a wire event.

Pure asyncio (no Ray): the actor wraps it, and it can run in a plain test. Stream modes are
LangGraph's own, renamed as the Agent Server names them on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessageChunk, message_chunk_to_message
from langgraph.types import Command, Send

from quadracode_ray import tracing
from runs.graph_registry import GraphRegistry
from runs.stream import RunStream, dumps, error_payload
from runs.v3_events import V3_MARKER, protocol_chunks

# wire mode -> LangGraph stream mode
_NATIVE = {"values": "values", "updates": "updates", "messages-tuple": "messages", "messages": "messages",
           "custom": "custom", "debug": "debug", "tasks": "tasks", "checkpoints": "checkpoints"}


@dataclass
class RunOutcome:
    status: str  # success | error | interrupted
    thread_outcome: str  # idle | interrupted | error
    error: dict | None = None
    values: Any = None
    interrupts: dict = field(default_factory=dict)
    output: Any = None  # what runs/wait answers
    database_outage: bool = False  # the graph raised because Postgres did not answer (see below)


def database_outage(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it) is Postgres not answering: a restart or an outage
    under a checkpoint write or a store call. No fault of the run's: the run host starts it
    again from its last checkpoint instead of ending it in error."""
    import psycopg
    import psycopg_pool

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def build_command(command: dict | None) -> Command | None:
    if not command:
        return None
    goto = command.get("goto")
    if goto is not None:
        items = goto if isinstance(goto, list) else [goto]
        goto = [Send(g["node"], g.get("input")) if isinstance(g, dict) else g for g in items]
        goto = goto[0] if len(goto) == 1 and not isinstance(command.get("goto"), list) else goto
    update = command.get("update")
    if isinstance(update, list):
        update = [tuple(item) for item in update]
    kwargs: dict[str, Any] = {"update": update, "goto": goto or ()}
    if "resume" in command:
        kwargs["resume"] = command["resume"]
    return Command(**kwargs)


def run_config(run: dict) -> dict:
    kwargs = run["kwargs"]
    config = dict(kwargs.get("config") or {})
    configurable = dict(config.get("configurable") or {})
    configurable.update(thread_id=str(run["thread_id"]), run_id=str(run["run_id"]),
                        assistant_id=str(run["assistant_id"]), graph_id=kwargs["graph_id"])
    config["configurable"] = configurable
    config["metadata"] = {**(config.get("metadata") or {}), **(run.get("metadata") or {}),
                          "run_id": str(run["run_id"]), "thread_id": str(run["thread_id"]),
                          "graph_id": kwargs["graph_id"], "assistant_id": str(run["assistant_id"]),
                          "run_attempt": run.get("attempt", 1)}
    config["run_id"] = run["run_id"]
    config.setdefault("recursion_limit", 25)
    return config


class _MessagesCompat:
    """The legacy ``messages`` mode: metadata once per message, then the accumulated text."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def events(self, chunk: Any) -> list[tuple[str, Any]]:
        message, metadata = chunk
        message_id = getattr(message, "id", None) or "unknown"
        out: list[tuple[str, Any]] = []
        if message_id not in self.seen:
            out.append(("messages/metadata", {message_id: {"metadata": metadata}}))
            self.seen[message_id] = message
        else:
            try:
                self.seen[message_id] = self.seen[message_id] + message
            except TypeError:
                self.seen[message_id] = message
        # Clients get the accumulated text as a whole message (type "ai"), as the official server
        # sends it: "partial" while a model streams chunks, "complete" for a node's whole message.
        event = "messages/partial" if isinstance(message, BaseMessageChunk) else "messages/complete"
        out.append((event, [message_chunk_to_message(self.seen[message_id])]))
        return out


TRACE_METADATA_KEY = "trace_context"
"""A run's metadata key holding the trace it continues (an agent's result continues its task's)."""


async def execute_run(run: dict, registry: GraphRegistry, stream: RunStream, *, checkpointer: Any,
                      store: Any = None, clients: dict[str, Any] | None = None) -> RunOutcome:
    """Run the graph for ``run`` (a qr_runs row), publishing events to ``stream``.

    The caller records the outcome, then publishes the end of the stream, so whoever sees
    the end also sees the thread's new state. Traced as a ``run`` span (``quadracode_ray.tracing``).
    """
    carried = (run.get("metadata") or {}).get(TRACE_METADATA_KEY)
    with tracing.attached(carried if isinstance(carried, dict) else None), \
            tracing.scope(thread_id=run.get("thread_id"), run_id=run.get("run_id"), agent_id=run.get("executor")), \
            tracing.span("run", **{"graph.id": run["kwargs"].get("graph_id"), "run.attempt": run.get("attempt")}) as span:
        outcome = await _execute_run(run, registry, stream, checkpointer=checkpointer, store=store, clients=clients)
        if span is not None:
            span.set_attribute("run.status", outcome.status)
        return outcome


async def _execute_run(run: dict, registry: GraphRegistry, stream: RunStream, *, checkpointer: Any,
                       store: Any = None, clients: dict[str, Any] | None = None) -> RunOutcome:
    kwargs = run["kwargs"]
    modes: list[str] = list(kwargs.get("stream_mode") or ["values"])
    subgraphs = bool(kwargs.get("subgraphs"))
    config = run_config(run)
    # Clients (fleet, delegation, workspace) the built-in graphs take from configurable; a
    # value the caller sent under the same key is a JSON value, never a client, so ours win.
    if isinstance(config["configurable"].get("guardrails"), dict) and "guardrails" in (clients or {}):
        # An assistant's own guardrails share their key with the host's guardrail source:
        # kept aside for the graph, which puts them on top (graphs/assistant_config.py).
        config["configurable"]["assistant_guardrails"] = config["configurable"]["guardrails"]
    config["configurable"].update(clients or {})
    context = kwargs.get("context") or None
    native = sorted({_NATIVE[m] for m in modes if m in _NATIVE} | {"values"})
    # As the official server: with messages-tuple asked too, messages come as tuples only.
    compat = _MessagesCompat() if "messages" in modes and "messages-tuple" not in modes else None
    last_values: Any = None
    saw_interrupt = False
    try:
        # The v3 (thread streaming) marker is the API's, never the graph's configuration.
        # Its value is the run's id: a later run inheriting it with the thread's config is no v3 run.
        protocol_v3 = config["configurable"].pop(V3_MARKER, None) == str(run["run_id"])
        graph = await registry.build(kwargs["graph_id"], config, checkpointer=checkpointer, store=store,
                                     access_context="threads.create_run", context=context)
        graph_input: Any = build_command(kwargs.get("command")) or kwargs.get("input")
        if run.get("attempt", 1) > 1 and await _has_run_checkpoint(checkpointer, config, run):
            graph_input = None  # a retried attempt continues from the last checkpoint it wrote
        options: dict[str, Any] = {"stream_mode": native, "subgraphs": True}
        if kwargs.get("interrupt_before"):
            options["interrupt_before"] = kwargs["interrupt_before"]
        if kwargs.get("interrupt_after"):
            options["interrupt_after"] = kwargs["interrupt_after"]
        if kwargs.get("durability"):
            options["durability"] = kwargs["durability"]
        if context:
            options["context"] = context
        if protocol_v3:
            chunks = protocol_chunks(graph, graph_input, config, options, stream)
        elif "events" in modes:
            chunks = _chunks_with_events(graph, graph_input, config, options, stream)
        else:
            chunks = graph.astream(graph_input, config, **options)
        async for namespace, mode, chunk in chunks:
            if mode == "values" and not namespace:
                last_values = chunk
            if isinstance(chunk, dict) and "__interrupt__" in chunk:
                saw_interrupt = True
            if protocol_v3 or (namespace and not subgraphs):
                continue  # (a v3 run's events are published as they come, in protocol_chunks)
            suffix = ("|" + "|".join(namespace)) if namespace else ""
            for event, data in _wire_events(mode, chunk, modes, compat):
                await stream.publish(event + suffix, dumps(data))
        if _ended_plainly(graph, kwargs, run, last_values, saw_interrupt):
            # The last values chunk is the thread's state (both read the graph's stream channels)
            # and nothing is left to run: no need to read the checkpoint back.
            return RunOutcome("success", "idle", values=last_values, interrupts={}, output=last_values)
        state = await graph.aget_state(config)
    except Exception as exc:
        error = error_payload(exc)
        outage = database_outage(exc)
        if not outage:  # (an outage's run is started again; its error goes out if it is not)
            await stream.publish("error", dumps(error))
        values = last_values if isinstance(last_values, dict) else None
        return RunOutcome("error", "error", error=error, values=_strip_interrupts(values),
                          output={"__error__": error}, database_outage=outage)
    interrupts = {task.id: list(task.interrupts) for task in state.tasks if task.interrupts}
    values = state.values
    interrupted = bool(interrupts) or bool(state.next)
    output = last_values if last_values is not None else values
    if interrupts and isinstance(output, dict) and "__interrupt__" not in output:
        output = {**output, "__interrupt__": [i for group in interrupts.values() for i in group]}
    return RunOutcome("success", "interrupted" if interrupted else "idle", values=values,
                      interrupts={k: [_interrupt_json(i) for i in v] for k, v in interrupts.items()},
                      output=output)


def _ended_plainly(graph: Any, kwargs: dict, run: dict, last_values: Any, saw_interrupt: bool) -> bool:
    """True when the run surely ended with nothing next: no interrupt seen, none configured
    (static interrupts show in no values chunk), a first attempt, a plain dict state."""
    return (not saw_interrupt and isinstance(last_values, dict) and run.get("attempt", 1) <= 1
            and not kwargs.get("interrupt_before") and not kwargs.get("interrupt_after")
            and not getattr(graph, "interrupt_before_nodes", None)
            and not getattr(graph, "interrupt_after_nodes", None))


def _wire_events(mode: str, chunk: Any, modes: list[str], compat: _MessagesCompat | None):
    if mode == "messages":
        if "messages-tuple" in modes:
            yield "messages", list(chunk)
        if compat is not None:
            yield from compat.events(chunk)
        return
    if mode == "values" and "values" not in modes:
        return
    if mode == "debug" and isinstance(chunk, dict) and chunk.get("type") == "checkpoint" and chunk.get("payload"):
        chunk = {**chunk, "payload": _debug_checkpoint(chunk["payload"])}
    yield mode, chunk


def _checkpoint_of(config: Any) -> dict | None:
    configurable = (config or {}).get("configurable") or {}
    if not configurable.get("thread_id") or not configurable.get("checkpoint_id"):
        return None
    out = {"checkpoint_id": configurable["checkpoint_id"], "thread_id": configurable["thread_id"]}
    if "checkpoint_ns" in configurable:
        out["checkpoint_ns"] = configurable["checkpoint_ns"] or ""
    return out


def _debug_checkpoint(payload: dict) -> dict:
    """A debug checkpoint event as the official server sends it: also ``checkpoint`` and
    ``parent_checkpoint``, and a task's subgraph ``state`` config as its ``checkpoint``."""
    tasks = []
    for task in payload.get("tasks") or []:
        state = task.get("state") if isinstance(task, dict) else None
        if isinstance(state, dict) and state.get("configurable"):
            task = {**{k: v for k, v in task.items() if k != "state"}, "checkpoint": state["configurable"]}
        tasks.append(task)
    return {**payload, "checkpoint": _checkpoint_of(payload.get("config")),
            "parent_checkpoint": _checkpoint_of(payload.get("parent_config")), "tasks": tasks}


async def _chunks_with_events(graph, graph_input, config, options, stream: RunStream):
    """Publish every LangChain event as ``events`` and yield the graph's own stream chunks,
    which arrive as the root run's ``on_chain_stream`` events."""
    root_run_id = None
    async for event in graph.astream_events(graph_input, config, version="v2", **options):
        if root_run_id is None:
            root_run_id = event.get("run_id")
        if event.get("event") == "on_chain_stream" and event.get("run_id") == root_run_id:
            yield event["data"]["chunk"]
            continue
        await stream.publish("events", dumps(event))


async def _has_run_checkpoint(checkpointer, config: dict, run: dict) -> bool:
    probe = {"configurable": {"thread_id": str(run["thread_id"]), "checkpoint_ns": ""}}
    async for _ in checkpointer.alist(probe, filter={"run_id": str(run["run_id"])}, limit=1):
        return True
    return False


def _interrupt_json(interrupt: Any) -> dict:
    return {"value": getattr(interrupt, "value", None), "id": getattr(interrupt, "id", None)}


def _strip_interrupts(values: Any) -> Any:
    if isinstance(values, dict) and "__interrupt__" in values:
        return {k: v for k, v in values.items() if k != "__interrupt__"}
    return values
