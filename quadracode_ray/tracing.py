"""OpenTelemetry traces of runs, model calls, tool calls and sandbox operations.

Off by default, and then free: with ``settings.otlp_endpoint`` unset nothing of the
OpenTelemetry SDK is imported, no exporter exists, ``span`` yields None without making a
span and ``carrier`` is empty. With it set (``QUADRACODE_OTLP_ENDPOINT``, an OTLP/HTTP
traces URL such as ``http://127.0.0.1:6006/v1/traces``), every process of the system that
calls ``configure_tracing`` exports its spans there in batches.

The ids a span belongs to travel as W3C baggage (``thread.id``, ``run.id``, ``agent.id``,
``workspace.id``, ``task.id``): ``scope`` adds them, and every span started under that
context carries them as attributes, in this process and in the actors the context is
handed to. Context crosses actors as a plain dict (``carrier()`` on one side,
``attached(carrier)`` on the other), so a task delegated to an agent actor, and the sandbox
operations it causes, are one trace with the run that delegated it.

Core code only: no Ray here; the actors carry the dict over their own calls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from quadracode_ray.config import Settings

log = logging.getLogger(__name__)

ID_KEYS = ("thread.id", "run.id", "agent.id", "workspace.id", "task.id")
_lock = threading.Lock()
_enabled = False
_endpoint: str | None = None


def enabled() -> bool:
    return _enabled


def configure_tracing(settings: Settings, role: str) -> bool:
    """Export this process's spans to ``settings.otlp_endpoint`` (once per process; ``role``
    names the process in the spans' resource). False, and nothing done, when it is unset."""
    global _enabled, _endpoint
    endpoint = settings.otlp_endpoint
    if not endpoint:
        return False
    with _lock:
        if _enabled:
            if endpoint != _endpoint:
                log.warning("tracing already exports to %s; ignoring %s", _endpoint, endpoint)
            return True
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": settings.trace_service_name, "quadracode.role": role,
                                    "quadracode.installation": settings.actor_name_prefix,
                                    "process.pid": os.getpid()})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(_baggage_attributes())
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint),
                                                       schedule_delay_millis=1000))
        trace.set_tracer_provider(provider)
        _enabled, _endpoint = True, endpoint
    return True


def flush(timeout_s: float = 10.0) -> None:
    """Export the spans still buffered (before a process ends, or in tests)."""
    if _enabled:
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        force = getattr(provider, "force_flush", None)
        if force is not None:
            force(int(timeout_s * 1000))


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span named ``name`` around the block (the current one inside it), with the ids of the
    context's baggage and ``attributes`` (None values left out); an exception is recorded on it.
    Off: yields None, nothing made."""
    if not _enabled:
        yield None
        return
    from opentelemetry import trace

    clean = {key: _attribute(value) for key, value in attributes.items() if value is not None}
    with trace.get_tracer("quadracode_ray").start_as_current_span(name, attributes=clean) as current:
        yield current


@contextlib.contextmanager
def scope(**ids: Any) -> Iterator[None]:
    """Put ids (``thread_id=...`` becomes baggage ``thread.id``) in the current context, so every
    span started inside, here or in an actor the context is handed to, carries them."""
    if not _enabled:
        yield
        return
    from opentelemetry import baggage, context

    ctx = context.get_current()
    for key, value in ids.items():
        if value is not None and value != "":
            ctx = baggage.set_baggage(key.replace("_id", ".id"), str(value), ctx)
    token = context.attach(ctx)
    try:
        yield
    finally:
        context.detach(token)


def carrier() -> dict[str, str]:
    """The current trace context and ids as a plain dict (W3C traceparent and baggage); empty
    when tracing is off or no span is current."""
    if not _enabled:
        return {}
    from opentelemetry import trace

    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    out: dict[str, str] = {}
    _propagator().inject(out)
    return out


@contextlib.contextmanager
def attached(carried: Mapping[str, str] | None) -> Iterator[None]:
    """Continue the trace ``carried`` (from ``carrier()`` in another process) inside the block."""
    if not _enabled or not carried:
        yield
        return
    from opentelemetry import context

    token = context.attach(_propagator().extract(dict(carried)))
    try:
        yield
    finally:
        context.detach(token)


def _propagator():
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


def _attribute(value: Any) -> Any:
    return value if isinstance(value, str | bool | int | float) else str(value)


def _baggage_attributes() -> Any:
    """A span processor giving each span the context's ids (``ID_KEYS``) as attributes."""
    from opentelemetry import baggage
    from opentelemetry.sdk.trace import SpanProcessor

    class BaggageAttributes(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            for key in ID_KEYS:
                value = baggage.get_baggage(key, parent_context)
                if value is not None and key not in (span.attributes or {}):
                    span.set_attribute(key, str(value))

    return BaggageAttributes()
