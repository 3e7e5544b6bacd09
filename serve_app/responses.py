"""JSON responses (orjson: UUIDs and datetimes as the official server writes them)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response

from runs.stream import dumps


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(content), status_code=status_code, headers=headers, media_type="application/json")


def raw_json_response(body: bytes, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")


def loads(body: bytes) -> Any:
    return orjson.loads(body)
