"""Objects named by import path (``package.module:attr``) in the settings, and factories called
with the keyword arguments they accept: how graphs, brains and clients are plugged in."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any


class ImportPathError(ValueError):
    """An import path (module:attr) in the settings does not name an importable object."""


def load_object(path: str) -> Any:
    """``package.module:attr`` -> the object, with an error that names the path."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ImportPathError(f"{path!r} is not an import path of the form package.module:attr")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportPathError(f"cannot import {module_name!r} (from {path!r}): {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportPathError(f"{module_name!r} has no attribute {attr!r} (from {path!r})") from None
    return obj


def accepted_parameters(factory: Callable[..., Any]) -> set[str] | None:
    """Keyword names ``factory`` accepts; None when it takes any (**kwargs) or cannot be inspected."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {name for name, p in params.items()
            if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}


def call_with_supported(factory: Callable[..., Any], *, lazy: dict[str, Callable[[], Any]] | None = None,
                        **available: Any) -> Any:
    """Call ``factory`` with those of ``available`` it accepts (all of them if it takes **kwargs).

    ``lazy`` values are made only when the factory names them (a chat model, a workspace)."""
    accepted = accepted_parameters(factory)
    kwargs = {name: value for name, value in available.items() if accepted is None or name in accepted}
    for name, make in (lazy or {}).items():
        if accepted is not None and name in accepted:
            kwargs[name] = make()
    return factory(**kwargs)
