"""A2A (Agent2Agent protocol, JSON-RPC binding) for every assistant, as the official server.

Each assistant is an agent at ``/a2a/{assistant_id}`` with its agent card beside it. An A2A
context is a thread (``contextId`` = thread id) and a task is one run on it (task id
``"{thread_id}:{run_id}"``, so ``tasks/get`` needs nothing else). Methods: ``message/send``
(runs the assistant on the context's thread and answers with the finished task),
``tasks/get`` and ``tasks/cancel``, and ``message/stream`` (serve_app/a2a_stream.py); the v1
names (``SendMessage``, ``SendStreamingMessage``, ``GetTask``, ``CancelTask``) are accepted too
and answered with v1 enum spellings.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from quadracode_ray import __version__
from serve_app.context import AppContext
from serve_app.mcp_server import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    RpcError,
    error_text,
)
from serve_app.records import assistants as assistant_records
from serve_app.runs import service
from serve_app.schemas import RunCreate

TASK_NOT_FOUND, TASK_NOT_CANCELABLE = -32001, -32002
PROTOCOL_VERSION = "0.3.0"
IO_MODES = ["text/plain", "application/json"]
_V1_METHODS = {"SendMessage": "message/send", "GetTask": "tasks/get", "CancelTask": "tasks/cancel",
               "SendStreamingMessage": "message/stream"}
_STATE_BY_RUN_STATUS = {"pending": "submitted", "running": "working", "success": "completed",
                        "error": "failed", "timeout": "failed", "interrupted": "canceled"}
_V1_ROLES = {"user": "ROLE_USER", "agent": "ROLE_AGENT"}


# --- agent card ----------------------------------------------------------------------------------
async def agent_card(context: AppContext, assistant_id: str, owner: str | None, base_url: str,
                     auth_enabled: bool) -> dict[str, Any]:
    assistant = await resolve_assistant(context, assistant_id, owner)
    name = assistant["name"]
    description = assistant.get("description") or f"{name} assistant (graph {assistant['graph_id']})"
    url = f"{base_url.rstrip('/')}/a2a/{assistant['assistant_id']}"
    card: dict[str, Any] = {
        "protocolVersion": PROTOCOL_VERSION,
        "name": name,
        "description": description,
        "url": url,
        "preferredTransport": "JSONRPC",
        "additionalInterfaces": [{"url": url, "transport": "JSONRPC"}],
        "version": __version__,
        "capabilities": {"streaming": True, "pushNotifications": False, "stateTransitionHistory": False},
        "defaultInputModes": IO_MODES,
        "defaultOutputModes": IO_MODES,
        "skills": [{
            "id": f"{assistant['assistant_id']}-main",
            "name": f"{name} Capabilities",
            "description": description,
            "tags": ["assistant", "langgraph", assistant["graph_id"]],
            "examples": [],
            "inputModes": IO_MODES,
            "outputModes": IO_MODES,
        }],
        "supportsAuthenticatedExtendedCard": False,
    }
    if auth_enabled:
        card["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"},
                                   "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}}
        card["security"] = [{"bearer": []}, {"apiKey": []}]
    return card


async def resolve_assistant(context: AppContext, value: str, owner: str | None) -> dict:
    try:
        assistant_id = service.resolve_assistant_id(context, value)
        return await assistant_records.get(await context.ready(), assistant_id, owner)
    except Exception as exc:
        if getattr(exc, "status_code", None) in (404, 422):
            raise RpcError(INVALID_PARAMS, f"Assistant '{value}' not found") from None
        raise


# --- JSON-RPC ------------------------------------------------------------------------------------
async def handle_request(context: AppContext, owner: str | None, assistant_id: str,
                         message: dict[str, Any]) -> dict[str, Any]:
    method = message["method"]
    v1 = method in _V1_METHODS
    method = _V1_METHODS.get(method, method)
    params = message.get("params") or {}
    try:
        assistant = await resolve_assistant(context, assistant_id, owner)
        if method == "message/send":
            result = await send_message(context, owner, assistant, params)
        elif method == "tasks/get":
            result = await get_task(context, owner, params)
        elif method == "tasks/cancel":
            result = await cancel_task(context, owner, params)
        else:
            raise RpcError(METHOD_NOT_FOUND, f"Method not found: {message['method']}")
    except RpcError as exc:
        return {"jsonrpc": "2.0", "id": message["id"], "error": exc.to_json()}
    except Exception as exc:
        return {"jsonrpc": "2.0", "id": message["id"],
                "error": {"code": INTERNAL_ERROR, "message": f"Internal error: {type(exc).__name__}: {exc}"}}
    return {"jsonrpc": "2.0", "id": message["id"], "result": to_v1(result) if v1 else result}


def to_v1(value: Any) -> Any:
    """v1 spellings: TASK_STATE_COMPLETED, ROLE_AGENT, and the task wrapped as {"task": ...}."""
    def convert(item: Any) -> Any:
        if isinstance(item, dict):
            out = {}
            for key, inner in item.items():
                if key == "state" and isinstance(inner, str):
                    out[key] = "TASK_STATE_" + inner.upper().replace("-", "_")
                elif key == "role" and isinstance(inner, str):
                    out[key] = _V1_ROLES.get(inner, inner)
                else:
                    out[key] = convert(inner)
            return out
        if isinstance(item, list):
            return [convert(inner) for inner in item]
        return item

    converted = convert(value)
    return {"task": converted} if isinstance(value, dict) and value.get("kind") == "task" else converted


def graph_input(message: dict[str, Any]) -> dict[str, Any]:
    """The run input of a user message: data parts merge into it; text becomes a user message."""
    parts = message.get("parts")
    if not isinstance(parts, list) or not parts:
        raise RpcError(INVALID_PARAMS, "Invalid params: message.parts must be a non-empty list")
    texts, data = [], {}
    for part in parts:
        kind = part.get("kind") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "data" and isinstance(part.get("data"), dict):
            data.update(part["data"])
        else:
            raise RpcError(INVALID_PARAMS, f"Invalid params: unsupported message part {part!r} "
                                           "(text and data parts are accepted)")
    if texts:
        data.setdefault("messages", []).append({"role": "user", "content": "\n".join(texts)})
    return data


async def start_task(context: AppContext, owner: str | None, assistant: dict, params: dict[str, Any], *,
                     stream_mode: list[str] | None = None, push: bool = True) -> tuple[dict, dict]:
    """Queue the run of a ``message/send`` or ``message/stream``: (the run row, the user message
    as the task's history records it). ``push=False``: the caller starts the run with its first
    ``run_events(start=True)`` call (see ``service.create_run``)."""
    message = params.get("message")
    if not isinstance(message, dict):
        raise RpcError(INVALID_PARAMS, "Invalid params: 'message' (an A2A Message object) is required")
    if message.get("role") not in ("user", "ROLE_USER"):
        raise RpcError(INVALID_PARAMS, "Invalid params: message.role must be 'user'")
    run_input = graph_input(message)
    context_id = message.get("contextId") or str(uuid.uuid4())
    try:
        thread_id = str(uuid.UUID(str(context_id)))
    except ValueError:
        raise RpcError(INVALID_PARAMS, f"Invalid params: contextId {context_id!r} must be a UUID") from None
    body = RunCreate(assistant_id=str(assistant["assistant_id"]), input=run_input, if_not_exists="create",
                     metadata={"a2a_message_id": message.get("messageId")}, stream_mode=stream_mode)
    try:
        run = await (service.create_run(context, body, thread_id=thread_id, owner=owner) if push else
                     service.create_run_for_reply(context, body, thread_id=thread_id, owner=owner))
    except Exception as exc:
        if getattr(exc, "status_code", None) == 409:
            raise RpcError(INVALID_REQUEST, f"Context {thread_id} is busy with another task") from None
        if getattr(exc, "status_code", None) in (400, 404, 422):
            raise RpcError(INVALID_PARAMS, f"Invalid params: {getattr(exc, 'detail', exc)}") from None
        raise
    user_message = {**message, "kind": "message", "contextId": thread_id,
                    "taskId": task_id_of(thread_id, str(run["run_id"]))}
    return run, user_message


def task_state(output: Any) -> str:
    """The A2A state a finished run's output stands for."""
    output = output if isinstance(output, dict) else {}
    return "failed" if "__error__" in output else "input-required" if "__interrupt__" in output else "completed"


async def send_message(context: AppContext, owner: str | None, assistant: dict,
                       params: dict[str, Any]) -> dict[str, Any]:
    run, user_message = await start_task(context, owner, assistant, params)
    output = await service.final_output(context, run)
    history_length = params.get("configuration", {}).get("historyLength") if isinstance(
        params.get("configuration"), dict) else None
    return _task(str(run["thread_id"]), str(run["run_id"]), task_state(output), output,
                 str(assistant["assistant_id"]), history=[] if history_length == 0 else [user_message])


def task_id_of(thread_id: str, run_id: str) -> str:
    return f"{thread_id}:{run_id}"


def _parse_task_id(params: dict[str, Any]) -> tuple[str, str]:
    task_id = params.get("id")
    if not isinstance(task_id, str):
        raise RpcError(INVALID_PARAMS, "Invalid params: 'id' (the task id) is required")
    thread_id, _, run_id = task_id.partition(":")
    try:
        return str(uuid.UUID(thread_id)), str(uuid.UUID(run_id))
    except ValueError:
        raise RpcError(TASK_NOT_FOUND, f"Task not found: {task_id}") from None


def agent_text(output: Any) -> str | None:
    messages = output.get("messages") if isinstance(output, dict) else None
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("type") in ("ai", "AIMessage", "AIMessageChunk"):
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return None


def agent_message(thread_id: str, run_id: str, part: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "message", "role": "agent", "messageId": str(uuid.uuid4()),
            "taskId": task_id_of(thread_id, run_id), "contextId": thread_id, "parts": [part]}


def failure_message(thread_id: str, run_id: str, output: dict) -> dict[str, Any]:
    text = f"Error executing assistant: {error_text(output.get('__error__'))}"
    return agent_message(thread_id, run_id, {"kind": "text", "text": text})


def result_artifact(state: str, output: Any, assistant_id: str) -> dict[str, Any] | None:
    """The artifact a finished task carries: the interrupts, or the assistant's response."""
    output = output if isinstance(output, dict) else {}
    if state == "input-required":
        return {"artifactId": str(uuid.uuid4()), "name": "Interrupt",
                "description": "Agent requires input to continue",
                "parts": [{"kind": "data", "data": {"id": i.get("id"), "value": i.get("value")}}
                          for i in output.get("__interrupt__", []) if isinstance(i, dict)]}
    if state == "completed":
        text = agent_text(output)
        parts = [{"kind": "text", "text": text}] if text is not None else [{"kind": "data", "data": output}]
        return {"artifactId": str(uuid.uuid4()), "name": "Assistant Response",
                "description": f"Response from assistant {assistant_id}", "parts": parts}
    return None


def _task(thread_id: str, run_id: str, state: str, output: Any, assistant_id: str, *,
          history: list[dict] | None = None) -> dict[str, Any]:
    task_id = task_id_of(thread_id, run_id)
    status: dict[str, Any] = {"state": state, "timestamp": datetime.now(UTC).isoformat()}
    task: dict[str, Any] = {"kind": "task", "id": task_id, "contextId": thread_id, "status": status}
    if history is not None:
        task["history"] = history
    if state == "failed":
        status["message"] = failure_message(thread_id, run_id, output if isinstance(output, dict) else {})
    artifact = result_artifact(state, output, assistant_id)
    if artifact is not None:
        task["artifacts"] = [artifact]
    return task


async def get_task(context: AppContext, owner: str | None, params: dict[str, Any]) -> dict[str, Any]:
    thread_id, run_id = _parse_task_id(params)
    run = await _run(context, thread_id, run_id, owner, params["id"])
    state = _STATE_BY_RUN_STATUS.get(run["status"], "submitted")
    output = await service.thread_output(context, thread_id) if state in ("completed", "failed") else None
    if state == "completed" and isinstance(output, dict) and "__interrupt__" in output:
        state = "input-required"
    return _task(thread_id, run_id, state, output, str(run["assistant_id"]))


async def cancel_task(context: AppContext, owner: str | None, params: dict[str, Any]) -> dict[str, Any]:
    thread_id, run_id = _parse_task_id(params)
    run = await _run(context, thread_id, run_id, owner, params["id"])
    if run["status"] not in ("pending", "running"):
        raise RpcError(TASK_NOT_CANCELABLE, f"Task cannot be canceled: it is {_STATE_BY_RUN_STATUS[run['status']]}")
    await service.cancel_run(context, run_id, run.get("executor"))
    return _task(thread_id, run_id, "canceled", None, str(run["assistant_id"]))


async def _run(context: AppContext, thread_id: str, run_id: str, owner: str | None, task_id: str) -> dict:
    try:
        return await service.get_run_for(context, thread_id, run_id, owner)
    except Exception as exc:
        if getattr(exc, "status_code", None) == 404:
            raise RpcError(TASK_NOT_FOUND, f"Task not found: {task_id}") from None
        raise
