"""The sandbox API is written once (sandbox/protocol.py); the service, the Ray actor and the
client each offer every operation with the protocol's signature, and nothing more but the
actor's own probes. Pure inspection: no Docker, no Ray cluster."""

from __future__ import annotations

import inspect

import pytest

from sandbox.actor import WorkspaceSandbox
from sandbox.client import WorkspaceSandboxClient
from sandbox.protocol import OPERATIONS, WorkspaceOperations
from sandbox.service import WorkspaceService

ACTOR_CLASS = WorkspaceSandbox.__ray_metadata__.modified_class
ACTOR_PROBES = {"ping", "recent_events"}  # about the actor process itself, not the workspace


def _shape(function, *, positional: bool = False) -> list[tuple]:
    """(name, kind, default, annotation) of each parameter; ``positional``: keyword-only ones
    read as positional-or-keyword (the client calls the actor positionally)."""
    shape = []
    for p in list(inspect.signature(function).parameters.values())[1:]:  # without self
        if p.name == "_ray_trace_ctx":
            continue  # added to every actor method by Ray (tracing), not part of the API
        kind = p.kind
        if positional and kind is inspect.Parameter.KEYWORD_ONLY:
            kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        shape.append((p.name, kind, p.default, " ".join(str(p.annotation).split())))
    return shape


def _flavour(function) -> str:
    if inspect.isasyncgenfunction(function):
        return "async generator"
    return "coroutine" if inspect.iscoroutinefunction(function) else "plain"


def _public(cls) -> set[str]:
    return {n for n, v in inspect.getmembers(cls) if not n.startswith("_") and inspect.isfunction(v)}


def test_the_protocol_lists_the_whole_api():
    assert len(OPERATIONS) == len(set(OPERATIONS)) >= 27
    assert {"exec", "exec_stream", "write_file", "copy", "snapshot", "restore_snapshot", "ensure"} <= set(OPERATIONS)


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(("implementation", "positional"), [
    (WorkspaceService, False), (WorkspaceSandboxClient, False), (ACTOR_CLASS, True),
], ids=["service", "client", "actor"])
def test_every_implementation_has_the_protocol_signature(implementation, positional, operation):
    declared = getattr(WorkspaceOperations, operation)
    offered = getattr(implementation, operation, None)
    assert offered is not None, f"{implementation.__name__} lacks {operation}"
    assert _shape(offered, positional=positional) == _shape(declared, positional=positional)
    assert inspect.signature(offered).return_annotation == inspect.signature(declared).return_annotation
    expected = "async generator" if operation == "exec_stream" else "coroutine"
    assert _flavour(offered) == expected


@pytest.mark.parametrize(("implementation", "extra"), [
    (WorkspaceService, {"close"}), (WorkspaceSandboxClient, ACTOR_PROBES), (ACTOR_CLASS, ACTOR_PROBES | {"traced", "traced_exec_stream"}),  # in the caller's trace
], ids=["service", "client", "actor"])
def test_no_implementation_offers_an_operation_the_protocol_lacks(implementation, extra):
    assert _public(implementation) - set(OPERATIONS) == extra


def test_a_signature_drift_would_be_seen():
    class Drifted:
        async def exec(self, command: str, *, cwd: str = "/", env: dict[str, str] | None = None,
                       timeout: float = 60.0): ...

    assert _shape(Drifted.exec) != _shape(WorkspaceOperations.exec)


@pytest.mark.parametrize("probe", sorted(ACTOR_PROBES))
def test_the_client_forwards_the_actor_probes_with_their_types(probe):
    client, actor = getattr(WorkspaceSandboxClient, probe), getattr(ACTOR_CLASS, probe)
    assert _shape(client, positional=True) == _shape(actor, positional=True)
    assert inspect.signature(client).return_annotation == inspect.signature(actor).return_annotation
