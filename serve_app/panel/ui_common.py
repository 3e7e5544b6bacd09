"""What every tab shares: which API a browser session talks to, with which key, and turning
any failure into a readable error toast (``gr.Error``) instead of a traceback."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr

from serve_app.panel.client import PanelClient, readable

log = logging.getLogger(__name__)
MOUNT_PATH = "/ui"


def api_url_from_page(url: str, mount_path: str = MOUNT_PATH) -> str:
    """The API's base URL from the URL of a request to the panel mounted at ``mount_path``
    (``http://h:8000/prefix/ui/gradio_api/queue/join`` -> ``http://h:8000/prefix``)."""
    marker = mount_path.rstrip("/") + "/"
    cut = url.find(marker)
    if cut < 0:
        cut = url.find(mount_path.rstrip("/")) if url.rstrip("/").endswith(mount_path.rstrip("/")) else -1
    base = url[:cut] if cut >= 0 else url.split("?", 1)[0]
    return base.rstrip("/")


def access_note(status: int | None, message: str, key_given: bool) -> str:
    """The line under the API key field after the panel tried the API with the key (or none)."""
    if status == 401 and not key_given:
        return "Key needed: This API asks for a key. Paste yours above and press **Use key**."
    if status in (401, 403) and key_given:
        return f"Key refused: the API refused this key ({message.split(' Check the key')[0]})."
    if status is not None or message:
        return f"The API did not answer as expected: {message}"
    return "✓ Key accepted: the panel shows what its owner may see." if key_given else ""


class PanelContext:
    """Where the API is: a fixed URL (standalone) or the URL the browser used (mounted at /ui)."""

    def __init__(self, api_url: str | None = None, auth_enabled: bool | None = None):
        self.api_url = api_url.rstrip("/") if api_url else None
        self.auth_enabled = auth_enabled
        self._clients: dict[tuple[str, str], PanelClient] = {}

    def url_for(self, request: gr.Request | None) -> str:
        if self.api_url:
            return self.api_url
        inner = getattr(request, "request", None) if request is not None else None
        if inner is not None and getattr(inner, "url", None) is not None:
            return api_url_from_page(str(inner.url))
        headers = dict(request.headers) if request is not None else {}
        host = headers.get("host")
        if not host:
            raise gr.Error("Cannot tell where the API is: open the panel through the API's address.")
        scheme = headers.get("x-forwarded-proto", "http")
        return f"{scheme}://{host}"

    def client(self, request: gr.Request | None, key: str | None) -> PanelClient:
        url = self.url_for(request)
        cache_key = (url, key or "")
        if cache_key not in self._clients:
            if len(self._clients) > 256:  # one per (API, key): bounded, the oldest dropped
                self._clients.pop(next(iter(self._clients)))
            self._clients[cache_key] = PanelClient(url, key or None)
        return self._clients[cache_key]


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a handler (coroutine or async generator): failures become a readable ``gr.Error``."""
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def generator(*args: Any, **kwargs: Any) -> Any:
            try:
                async for item in fn(*args, **kwargs):
                    yield item
            except gr.Error:
                raise
            except Exception as exc:
                log.info("panel handler %s failed: %s", fn.__name__, exc)
                raise gr.Error(readable(exc)) from None
        return generator

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            log.info("panel handler %s failed: %s", fn.__name__, exc)
            raise gr.Error(readable(exc)) from None
    return call
