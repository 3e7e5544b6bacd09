"""Calling a user's graph factory as the official server does.

A factory takes nothing, the run's config, a ``langgraph_sdk.runtime.ServerRuntime``, or both
(by keyword, in either order): a parameter annotated ``ServerRuntime`` (or one of its concrete
classes) gets the runtime, the other one the config. The runtime is the SDK's own class:
``_ExecutionRuntime`` (with the run's ``context``) when the graph is built to execute a run
(``threads.create_run``), ``_ReadRuntime`` otherwise (state reads, schemas). Its ``store`` is
the store the graph gets; where none is attached (schema reads) an empty in-memory store
stands in, as the runtime's contract is a ``BaseStore``.
"""

from __future__ import annotations

import copy
import inspect
import typing
from collections.abc import Callable
from typing import Any, get_args, get_origin

from langchain_core.runnables import RunnableConfig
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from langgraph_sdk.runtime import ServerRuntime, _ExecutionRuntime, _ReadRuntime

EXECUTION = "threads.create_run"
_RUNTIME_CLASSES = (_ExecutionRuntime, _ReadRuntime)
_LOCALNS = {"ServerRuntime": ServerRuntime, "RunnableConfig": RunnableConfig}


def _is_runtime(annotation: Any) -> bool:
    if annotation is inspect.Parameter.empty:
        return False
    if annotation is ServerRuntime:
        return True
    if isinstance(annotation, type):
        return issubclass(annotation, _RUNTIME_CLASSES)
    if isinstance(annotation, str):  # an annotation the hints could not resolve
        return annotation.split("[")[0].strip().endswith("ServerRuntime")
    origin = get_origin(annotation)
    if origin is ServerRuntime:
        return True
    args = get_args(annotation)
    return bool(origin is not None and args and _is_runtime(args[0]))


def factory_arguments(factory: Callable) -> list[tuple[str, str]]:
    """``[(parameter name, "config" | "runtime")]`` for ``factory``'s signature.

    Raises ValueError for a signature the official server refuses too (more than two
    parameters, or two of which not exactly one is the runtime)."""
    params = list(inspect.signature(factory).parameters.values())
    try:
        hints = typing.get_type_hints(factory, localns=_LOCALNS)
    except Exception:  # noqa: BLE001 - unresolvable hints: the raw annotations decide
        hints = {}
    kinds = ["runtime" if _is_runtime(hints.get(p.name, p.annotation)) else "config" for p in params]
    if len(params) > 2:
        raise ValueError(f"graph factory {factory!r} must take 0, 1 or 2 parameters, not {len(params)}")
    if len(params) == 2 and sorted(kinds) != ["config", "runtime"]:
        raise ValueError(f"graph factory {factory!r}: of two parameters one must be a ServerRuntime")
    return [(p.name, kind) for p, kind in zip(params, kinds, strict=True)]


def server_runtime(access_context: str, store: BaseStore | None, context: Any = None) -> Any:
    store = store if isinstance(store, BaseStore) else InMemoryStore()
    if access_context == EXECUTION:
        return _ExecutionRuntime(access_context=access_context, user=None, store=store,
                                 context=copy.copy(context) if context is not None else None)
    return _ReadRuntime(access_context=access_context, user=None, store=store)


async def call_factory(factory: Callable, config: dict, *, access_context: str = "threads.read",
                       store: Any = None, context: Any = None) -> Any:
    """What ``factory`` returns for this use (awaited when it is a coroutine)."""
    arguments = factory_arguments(factory)
    kwargs: dict[str, Any] = {}
    for name, kind in arguments:
        kwargs[name] = server_runtime(access_context, store, context) if kind == "runtime" else config
    result = factory(**kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result
