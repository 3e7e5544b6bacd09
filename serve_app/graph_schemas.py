"""An assistant's graph schemas and drawing exactly as the official server computes them.

State schema: one optional field per stream channel (``default: null``), titled after the
graph. Config schema: only the ``configurable`` part, without the runtime's own keys, ``{}``
when the graph declares none. Graph drawing: node ``data`` without its ``id`` (the runnable's
class path, an implementation detail).
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables.utils import create_model
from pydantic import TypeAdapter

# Keys LangGraph puts in configurable for itself, hidden from the config schema (as the official).
_RUNTIME_CONFIG_KEYS = ("__pregel_checkpointer", "__pregel_store", "checkpoint_id", "checkpoint_ns", "thread_id")


def _safe(compute) -> dict | None:
    try:
        return compute()
    except Exception:  # a graph without that schema reports None, like the official server
        return None


def state_jsonschema(graph: Any) -> dict:
    fields: dict[str, Any] = {}
    for key in graph.stream_channels_list:
        update_type = graph.channels[key].UpdateType
        try:
            create_model(key, __root__=(update_type, None)).model_json_schema()
            fields[key] = (update_type, None)
        except Exception:
            fields[key] = (Any, None)
    return create_model(graph.get_name("State"), **fields).model_json_schema()


def configurable_jsonschema(graph: Any) -> dict:
    config_schema = graph.config_schema()
    model_fields = getattr(config_schema, "model_fields", None)
    if not model_fields or "configurable" not in model_fields:
        return {}
    schema = TypeAdapter(model_fields["configurable"].annotation).json_schema()
    for key in _RUNTIME_CONFIG_KEYS:
        schema.get("properties", {}).pop(key, None)
    if getattr(graph, "config_type", None) is not None and hasattr(graph.config_type, "__name__"):
        schema["title"] = graph.config_type.__name__
    return schema


def graph_schemas(graph: Any, graph_id: str) -> dict:
    return {"graph_id": graph_id, "input_schema": _safe(graph.get_input_jsonschema),
            "output_schema": _safe(graph.get_output_jsonschema), "state_schema": _safe(lambda: state_jsonschema(graph)),
            "config_schema": _safe(lambda: configurable_jsonschema(graph)),
            "context_schema": _safe(graph.get_context_jsonschema)}


def drawing(graph_json: dict) -> dict:
    for node in graph_json.get("nodes", []):
        if isinstance(node.get("data"), dict):
            node["data"].pop("id", None)
    return graph_json
