"""The fabric and sandbox as the operator routes reach them, and their errors as HTTP errors.

One ``OperatorFabric`` per replica (on the AppContext), made on first use: the Serve replica
runs inside Ray, so it reaches the named actors of its installation directly. An actor that does
not exist (the API deployed without the fabric) or does not answer is a 503 that says which.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from actors.client import FabricClient
from actors.common import HandleCache
from actors.fleet import (
    AgentStartFailed,
    AgentStartTimeout,
    FleetCapacityError,
    HotpathAgentError,
    UnknownAgentError,
)
from actors.fleet_client import FleetActorClient
from quadracode_ray.interfaces.fleet import FleetError
from quadracode_ray.interfaces.workspace import (
    PathEscapeError,
    SnapshotNotFound,
    WorkspaceConflict,
    WorkspaceError,
    WorkspaceInvalidRequest,
    WorkspaceNotFound,
    WorkspacePathNotFound,
    WorkspaceUnavailable,
)
from runs.threads import InvalidThreadId
from serve_app.context import AppContext
from serve_app.errors import ApiError, BadRequest, Conflict, Invalid, NotFound, Unavailable


class OperatorFabric:
    def __init__(self, context: AppContext):
        self.settings = context.settings
        self.handles = HandleCache(context.settings)
        self.client = FabricClient(context.settings)
        self.fleet = FleetActorClient(context.settings)

    def actor(self, address: str) -> Any:
        """The handle of a fabric singleton (``registry``, ``events``, ``fleet``, ``orchestrator``)."""
        with translated():
            return self.handles.get(address)


def operator_fabric(context: AppContext) -> OperatorFabric:
    fabric = getattr(context, "operator_fabric", None)
    if fabric is None:
        fabric = context.operator_fabric = OperatorFabric(context)
    return fabric


_WORKSPACE_STATUS: tuple[tuple[type[WorkspaceError], type[ApiError]], ...] = (
    (PathEscapeError, BadRequest), (WorkspacePathNotFound, NotFound), (WorkspaceNotFound, NotFound),
    (SnapshotNotFound, NotFound), (WorkspaceInvalidRequest, BadRequest), (WorkspaceConflict, Conflict),
    (WorkspaceUnavailable, Unavailable),
)
_FLEET_STATUS: tuple[tuple[type[FleetError], type[ApiError]], ...] = (
    (FleetCapacityError, Conflict), (HotpathAgentError, Conflict), (UnknownAgentError, NotFound),
    (AgentStartTimeout, Unavailable), (AgentStartFailed, Unavailable),
)


def _cause(exc: BaseException) -> BaseException:
    """The exception an actor raised (Ray wraps it; the wrapper is often also an instance)."""
    cause = getattr(exc, "cause", None) if isinstance(exc, RayTaskError) else None
    return cause if isinstance(cause, BaseException) else exc


def api_error(exc: BaseException) -> ApiError | None:
    """``exc`` as the HTTP error it means, or None when it is a bug (left to be a 500)."""
    exc = _cause(exc)
    if isinstance(exc, ApiError):
        return exc
    for table in (_WORKSPACE_STATUS, _FLEET_STATUS):
        for error_type, status in table:
            if isinstance(exc, error_type):
                return status(str(exc))
    if isinstance(exc, InvalidThreadId):
        return Invalid(str(exc))
    if isinstance(exc, WorkspaceError):
        return BadRequest(str(exc))
    if isinstance(exc, FleetError):
        return Conflict(str(exc))
    if isinstance(exc, RayActorError | GetTimeoutError):
        return Unavailable(f"an actor of the fabric does not answer (restarting or dead): {exc}")
    if isinstance(exc, ValueError) and "Failed to look up actor" in str(exc):
        return Unavailable(f"the actor fabric is not running here: {exc}")
    return None


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise fabric and sandbox errors as the ApiErrors they mean (typed message kept)."""
    try:
        yield
    except ApiError:
        raise
    except Exception as exc:
        error = api_error(exc)
        if error is None:
            raise
        raise error from None
