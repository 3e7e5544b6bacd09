"""The v3 protocol's shape of state payloads (``values`` and ``updates`` events), as the official
server sends them: every LangChain message in them is reduced to the protocol's message
(``type``, ``content``, ``id``, ``name``, and per type its own fields), with list content as
protocol content blocks (a string stays a string), tool calls as ``tool_call`` /
``invalid_tool_call`` entries, and ``__interrupt__`` keys dropped.

Pure functions on JSON values; unknown shapes pass through unchanged.
"""

from __future__ import annotations

import json
from typing import Any

MESSAGE_TYPES = frozenset({"human", "ai", "system", "tool", "function", "remove"})
_TYPE_ALIASES = {"assistant": "ai", "user": "human"}
BLOCK_TYPES = frozenset({"text", "reasoning", "tool_call", "tool_call_chunk", "invalid_tool_call",
                         "server_tool_call", "server_tool_call_chunk", "server_tool_call_result",
                         "image", "audio", "video", "file", "non_standard"})
_AUDIO_MIME = {"mp3": "audio/mpeg", "wav": "audio/wav", "pcm16": "audio/wav", "pcm": "audio/wav",
               "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac"}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _message_type(value: Any) -> str | None:
    kind = _str(value.get("type")) if isinstance(value, dict) else None
    kind = _TYPE_ALIASES.get(kind, kind) if kind else None
    return kind if kind in MESSAGE_TYPES else None


def state_payload(value: Any) -> Any:
    """A ``values`` / ``updates`` payload in the protocol's shape (see the module docstring)."""
    if isinstance(value, list):
        return [message(item) if _message_type(item) else state_payload(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, entry in value.items():
        if key == "__interrupt__":
            continue
        if key == "messages" and isinstance(entry, list):
            out[key] = [message(item) if _message_type(item) else item for item in entry]
        else:
            out[key] = state_payload(entry)
    return out


def message(value: dict) -> dict:
    """One serialized LangChain message as the protocol's message."""
    kind = _message_type(value)
    extra = value.get("additional_kwargs") if isinstance(value.get("additional_kwargs"), dict) else {}
    out: dict[str, Any] = {"type": kind, "content": content(value.get("content", ""),
                                                            audio_block(extra) if kind == "ai" else None)}
    for key in ("id", "name"):
        if _str(value.get(key)) is not None:
            out[key] = value[key]
    if kind in ("ai", "human") and isinstance(value.get("example"), bool):
        out["example"] = value["example"]
    if isinstance(value.get("response_metadata"), dict) and value["response_metadata"]:
        out["response_metadata"] = value["response_metadata"]  # an interrupt's card can ride here
    if kind == "tool":
        if _str(value.get("tool_call_id")) is not None:
            out["tool_call_id"] = value["tool_call_id"]
        if value.get("status") in ("success", "error"):
            out["status"] = value["status"]
        if "artifact" in value:
            out["artifact"] = value["artifact"]
    if kind == "ai":
        raw = value.get("tool_calls") if isinstance(value.get("tool_calls"), list) and value["tool_calls"] \
            else extra.get("tool_calls") if isinstance(extra.get("tool_calls"), list) else []
        calls = [_tool_call(raw_call) for raw_call in raw if isinstance(raw_call, dict)]
        valid = [call for call in calls if call["type"] == "tool_call"]
        declared = value.get("invalid_tool_calls")
        invalid = [_declared_invalid_call(entry) for entry in declared if isinstance(entry, dict)] \
            if isinstance(declared, list) and declared else [c for c in calls if c["type"] != "tool_call"]
        if valid:
            out["tool_calls"] = valid
        if invalid:
            out["invalid_tool_calls"] = invalid
    return out


def _call_identity(raw: dict) -> tuple[str | None, str | None, Any]:
    """A tool call's id, name and arguments, from LangChain's or OpenAI's (``function``) shape."""
    function = raw.get("function") if isinstance(raw.get("function"), dict) else {}
    name = _str(raw.get("name")) or _str(function.get("name"))
    args = raw["args"] if "args" in raw else function.get("arguments")
    return _str(raw.get("id")), name, args


def _tool_call(raw: dict) -> dict:
    call_id, name, raw_args = _call_identity(raw)
    if name is None:
        return _invalid(call_id, None, raw_args, "Incomplete tool call.")
    args = {} if raw_args is None else raw_args
    if isinstance(raw_args, str):
        try:
            args = json.loads(raw_args) if raw_args else {}
        except ValueError:
            return _invalid(call_id, name, raw_args, "Malformed args.")
    out = {"type": "tool_call", "name": name, "args": args}
    if call_id is not None:
        out["id"] = call_id
    return out


def _invalid(call_id: str | None, name: str | None, args: Any, error: str) -> dict:
    out: dict[str, Any] = {"type": "invalid_tool_call"}
    if call_id is not None:
        out["id"] = call_id
    if name is not None:
        out["name"] = name
    if isinstance(args, str):
        out["args"] = args
    out["error"] = error
    return out


def _declared_invalid_call(raw: dict) -> dict:
    call_id, name, _ = _call_identity(raw)
    return _invalid(call_id, name, raw.get("args"), _str(raw.get("error")) or "Malformed args.")


def content(value: Any, audio: dict | None = None) -> Any:
    """Message content as protocol content blocks; a string stays a string (unless the message
    carries audio beside it, as OpenAI's audio output does)."""
    if isinstance(value, str):
        if audio is None:
            return value
        return ([{"type": "text", "text": value}] if value else []) + [audio]
    if not isinstance(value, list):
        return [audio] if audio is not None else value
    blocks = []
    for entry in value:
        block = {"type": "text", "text": entry} if isinstance(entry, str) else content_block(entry)
        if block is not None:
            blocks.append(block)
    if audio is not None and not any(block.get("type") == "audio" for block in blocks):
        blocks.append(audio)
    return blocks or value


def content_block(value: Any) -> dict | None:
    """One content block in the protocol's vocabulary (OpenAI's ``image_url`` and
    ``input_audio`` translated, anything else typed kept as ``non_standard``); None for an
    untyped one."""
    kind = _str(value.get("type")) if isinstance(value, dict) else None
    if kind is None:
        return None
    if kind in BLOCK_TYPES:
        return value
    if kind == "image_url":
        image = value.get("image_url")
        url = image if isinstance(image, str) else _str(image.get("url")) if isinstance(image, dict) else None
        return {"type": "image", "url": url} if url is not None else None
    if kind == "input_audio":
        raw = value.get("input_audio")
        if not isinstance(raw, dict):
            return None
        return {"type": "audio", **{key: raw[key] for key in ("data", "mime_type") if _str(raw.get(key)) is not None}}
    return {"type": "non_standard", "value": dict(value)}


def audio_block(additional_kwargs: dict) -> dict | None:
    """The audio an AI message carries in ``additional_kwargs["audio"]`` (OpenAI), as a block."""
    audio = additional_kwargs.get("audio")
    if not isinstance(audio, dict) or (_str(audio.get("data")) is None and _str(audio.get("url")) is None):
        return None
    out: dict[str, Any] = {"type": "audio"}
    for key in ("id", "url", "data"):
        if _str(audio.get(key)) is not None:
            out[key] = audio[key]
    audio_format = audio["format"].lower() if isinstance(audio.get("format"), str) else (
        None if _str(audio.get("mime_type")) is not None else "wav")
    if _str(audio.get("mime_type")) is not None:
        out["mime_type"] = audio["mime_type"]
    elif audio_format in _AUDIO_MIME:
        out["mime_type"] = _AUDIO_MIME[audio_format]
    if _str(audio.get("transcript")) is not None:
        out["transcript"] = audio["transcript"]
    return out
