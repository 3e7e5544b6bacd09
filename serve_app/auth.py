"""Who is calling, and (when auth is on) refusing whoever is not known.

Routes take ``owner: str | None = Depends(current_owner)``, store it on what they create,
and, when it is not None, only show and touch rows of that owner.

Auth is on when the ``auth_api_keys`` setting names at least one key. Then every route but
``/ok``, ``/health`` and the control panel's pages under ``/ui`` (a client that sends the key
its user gives it on each of its own API calls) needs ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>``:
no key is a 401, an unknown key a 403, both JSON ``{"detail": ...}`` as the official server
answers. ``install_auth(app)`` puts the check in front of the whole FastAPI app.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from serve_app.auth_keys import ApiKeys, presented_key

PUBLIC_PATHS = frozenset({"/ok", "/health"})
PUBLIC_PREFIXES = ("/ui/",)


async def current_owner(request: Request) -> str | None:
    return getattr(request.state, "owner", None)


class ApiKeyAuthMiddleware:
    """Pure ASGI (no response buffering), so SSE streams pass through untouched."""

    def __init__(self, app: ASGIApp, keys: ApiKeys):
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope)
        if (scope["type"] not in ("http", "websocket") or not self.keys.enabled or path in PUBLIC_PATHS
                or path == "/ui" or path.startswith(PUBLIC_PREFIXES)):
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                   for name, value in scope.get("headers", ())}
        key = presented_key(headers)
        if key is None:
            await _deny(send, 401, "Missing API key: send 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'.", scope)
            return
        owner = self.keys.owner_of(key)
        if owner is None:
            await _deny(send, 403, "Invalid API key.", scope)
            return
        scope.setdefault("state", {})["owner"] = owner
        await self.app(scope, receive, send)


def route_path(scope: Scope) -> str:
    # Behind Serve's route prefix the path still carries root_path; routes are matched without it.
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root):] or "/" if root and path.startswith(root) else path


async def _deny(send: Send, status: int, detail: str, scope: Scope | None = None) -> None:
    if scope is not None and scope["type"] == "websocket":
        # Closing before accepting refuses the handshake (HTTP 403 to the client).
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="quadracode"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install_auth(app: FastAPI) -> None:
    """Put API-key auth in front of every route (a no-op when no key is configured). Idempotent."""
    if getattr(app.state, "auth_installed", False):
        return
    settings = app.state.context.settings
    secret = settings.auth_api_keys
    keys = ApiKeys.parse(secret.get_secret_value() if secret is not None else None)
    app.state.auth_installed = True
    app.state.auth_enabled = keys.enabled
    if keys.enabled:
        app.add_middleware(ApiKeyAuthMiddleware, keys=keys)
