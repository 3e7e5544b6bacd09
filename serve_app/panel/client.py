"""Every HTTP call the panel makes, in one place: the LangGraph API through the official
``langgraph-sdk``, the operator API (issue 11's routes) through ``httpx``.

Any failure (a 4xx with a reason, a refused connection, a timeout) comes out as ``PanelError``
with one readable sentence, which the UI shows as an error toast, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
from langgraph_sdk import get_client
from langgraph_sdk.errors import APIError

DEFAULT_TIMEOUT = 30.0


KEY_HINTS = {
    401: "Paste your key in the API key field at the top of the panel and press Use key.",
    403: "Check the key in the API key field at the top of the panel.",
}


class PanelError(Exception):
    """A failure the panel shows to its user as is (``status``: the API's HTTP status, if any)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an API call failed with, when it got an answer."""
    if isinstance(exc, PanelError):
        return exc.status
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) if isinstance(exc, (httpx.HTTPStatusError, APIError)) else None


def _with_hint(status: int, detail: str) -> str:
    # A missing or refused key says where to give one (a 403 of an admin route keeps its reason).
    hint = KEY_HINTS.get(status) if status == 401 or "api key" in detail.lower() else None
    return f"{status}: {detail}" + (f" {hint}" if hint else "")


def readable(exc: BaseException) -> str:
    """One sentence for any failure of an API call (the server's reason when it gave one)."""
    if isinstance(exc, PanelError):
        return str(exc)
    if isinstance(exc, httpx.HTTPStatusError):
        return _with_hint(exc.response.status_code, _detail(exc.response))
    if isinstance(exc, APIError):
        response = getattr(exc, "response", None)
        if response is not None:
            return _with_hint(response.status_code, _detail(response))
        return str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return "The API did not answer in time."
    if isinstance(exc, httpx.TransportError):
        return f"Cannot reach the API ({type(exc).__name__}: {exc})."
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (ValueError, httpx.ResponseNotRead):
        try:
            return response.text[:500] or response.reason_phrase
        except httpx.ResponseNotRead:
            return response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI's validation errors
        return "; ".join(f"{'.'.join(str(p) for p in item.get('loc', [])[1:])}: {item.get('msg')}"
                         if isinstance(item, dict) else str(item) for item in detail)
    return detail if isinstance(detail, str) else json.dumps(detail)[:500]


def _params(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value not in (None, "")}


class PanelClient:
    """The API at ``url`` as one user sees it (``api_key`` scopes everything to its owner)."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        self.url = url.rstrip("/")
        self.headers = {"X-Api-Key": api_key} if api_key else {}
        self.langgraph = get_client(url=self.url, api_key=None, headers=self.headers, timeout=timeout)
        self.http = httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=timeout)

    async def aclose(self) -> None:
        await self.http.aclose()

    # --- plain HTTP --------------------------------------------------------------------------------
    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self.http.request(method, path, **kwargs)
            response.raise_for_status()
        except Exception as exc:
            raise PanelError(readable(exc), status_of(exc)) from exc
        if not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    async def sse(self, method: str, path: str, *, last_event_id: str | None = None,
                  **kwargs: Any) -> AsyncIterator[tuple[str, str, Any]]:
        """Server-sent events as (event, id, data parsed as JSON when it is)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        try:
            async with self.http.stream(method, path, headers=headers, timeout=httpx.Timeout(30, read=None),
                                        **kwargs) as response:
                if response.is_error:
                    await response.aread()
                    response.raise_for_status()
                event, event_id, data = "message", "", []
                async for line in response.aiter_lines():
                    if line == "":
                        if data:
                            text = "\n".join(data)
                            try:
                                parsed: Any = json.loads(text)
                            except ValueError:
                                parsed = text
                            yield event, event_id, parsed
                        event, data = "message", []
                    elif line.startswith(":"):
                        continue
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "event":
                            event = value
                        elif name == "data":
                            data.append(value)
                        elif name == "id":
                            event_id = value
        except PanelError:
            raise
        except Exception as exc:
            raise PanelError(readable(exc), status_of(exc)) from exc

    async def text(self, path: str) -> str:
        try:
            response = await self.http.get(path)
            response.raise_for_status()
        except Exception as exc:
            raise PanelError(readable(exc), status_of(exc)) from exc
        return response.text

    # --- LangGraph API -----------------------------------------------------------------------------
    async def call(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except Exception as exc:
            raise PanelError(readable(exc), status_of(exc)) from exc

    async def assistants(self) -> list[dict[str, Any]]:
        return await self.call(self.langgraph.assistants.search(limit=100))

    async def search_threads(self, status: str | None = None, metadata: dict | None = None,
                             limit: int = 50) -> list[dict[str, Any]]:
        return await self.call(self.langgraph.threads.search(status=status or None, metadata=metadata or None,
                                                             limit=limit))

    async def create_thread(self, metadata: dict | None = None) -> dict[str, Any]:
        return await self.call(self.langgraph.threads.create(metadata=metadata or None))

    async def thread_state(self, thread_id: str, checkpoint_id: str | None = None) -> dict[str, Any]:
        return await self.call(self.langgraph.threads.get_state(thread_id, checkpoint_id=checkpoint_id))

    async def history(self, thread_id: str, limit: int = 50) -> list[dict[str, Any]]:
        return await self.call(self.langgraph.threads.get_history(thread_id, limit=limit))

    async def runs(self, thread_id: str, limit: int = 50) -> list[dict[str, Any]]:
        return await self.call(self.langgraph.runs.list(thread_id, limit=limit))

    async def cancel_run(self, thread_id: str, run_id: str) -> None:
        await self.call(self.langgraph.runs.cancel(thread_id, run_id))

    async def join_run(self, thread_id: str, run_id: str) -> None:
        """Return once the run ended (the server holds the request until then)."""
        await self.call(self.langgraph.runs.join(thread_id, run_id))

    async def fork(self, thread_id: str, checkpoint_id: str, values: dict | None,
                   as_node: str | None = None) -> dict[str, Any]:
        """A new checkpoint branching off ``checkpoint_id`` (update_state at that checkpoint, the
        values written as ``as_node``: the run that continues starts at what follows that node)."""
        return await self.call(self.langgraph.threads.update_state(thread_id, values or {}, as_node=as_node or None,
                                                                   checkpoint_id=checkpoint_id))

    async def start_run(self, thread_id: str, assistant_id: str, *, checkpoint_id: str | None = None,
                        input: dict | None = None) -> dict[str, Any]:
        return await self.call(self.langgraph.runs.create(thread_id, assistant_id, input=input,
                                                          checkpoint_id=checkpoint_id))

    async def stream_run(self, thread_id: str, assistant_id: str, *, input: dict | None = None,
                         command: dict | None = None, checkpoint_id: str | None = None) -> AsyncIterator[Any]:
        stream = self.langgraph.runs.stream(thread_id, assistant_id, input=input, command=command,
                                            checkpoint_id=checkpoint_id,
                                            stream_mode=["messages-tuple", "values", "custom"])
        try:
            async for part in stream:
                yield part
        except Exception as exc:
            raise PanelError(readable(exc), status_of(exc)) from exc

    async def join_thread(self, thread_id: str) -> AsyncIterator[Any]:
        try:
            # run_modes: every run of the thread in the modes it was started with, and its lifecycle.
            # (this SDK's threads.join_stream is a coroutine that returns the stream)
            async for part in await self.langgraph.threads.join_stream(thread_id, stream_mode="run_modes"):
                yield part
        except Exception as exc:
            raise PanelError(readable(exc), status_of(exc)) from exc

    # --- operator API: fleet, events, control -------------------------------------------------------
    async def fleet_agents(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/fleet/agents")

    async def fleet(self) -> dict[str, Any]:
        return await self.request("GET", "/fleet")

    async def spawn(self, kind: str, capabilities: list[str], hotpath: bool) -> dict[str, Any]:
        return await self.request("POST", "/fleet/agents",
                                  json={"kind": kind, "capabilities": capabilities, "hotpath": hotpath})

    async def set_hotpath(self, agent_id: str, hotpath: bool) -> dict[str, Any]:
        return await self.request("PATCH", f"/fleet/agents/{quote(agent_id, safe='')}", json={"hotpath": hotpath})

    async def kill(self, agent_id: str, force: bool) -> Any:
        return await self.request("DELETE", f"/fleet/agents/{quote(agent_id, safe='')}",
                                  params={"force": str(force).lower()})

    async def events(self, limit: int = 100, cursor: str | None = None, **filters: Any) -> Any:
        return await self.request("GET", "/events", params=_params(limit=limit, cursor=cursor, **filters))

    def event_stream(self, last_event_id: str | None = None, **filters: Any) -> AsyncIterator[tuple[str, str, Any]]:
        return self.sse("GET", "/events/stream", params=_params(**filters), last_event_id=last_event_id)

    async def stop_thread(self, thread_id: str) -> Any:
        return await self.request("POST", f"/threads/{quote(thread_id, safe='')}/stop")

    async def stop_system(self, kill_agents: bool = False) -> Any:
        return await self.request("POST", "/system/stop", json={"kill_agents": kill_agents})

    async def system_status(self) -> dict[str, Any]:
        return await self.request("GET", "/system/status")

    async def guardrails(self) -> dict[str, Any]:
        return await self.request("GET", "/system/guardrails")

    async def set_guardrails(self, changes: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", "/system/guardrails", json=changes)

    async def metrics_text(self) -> str:
        return await self.text("/metrics")

    # --- operator API: workspaces -------------------------------------------------------------------
    @staticmethod
    def _ws(workspace_id: str, tail: str = "") -> str:
        return f"/workspaces/{quote(workspace_id, safe='')}{tail}"

    async def workspaces(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/workspaces")

    async def create_workspace(self, workspace_id: str, network: bool = False) -> dict[str, Any]:
        return await self.request("POST", "/workspaces", json={"workspace_id": workspace_id, "network": network})

    async def workspace(self, workspace_id: str) -> dict[str, Any]:
        return await self.request("GET", self._ws(workspace_id))

    async def list_files(self, workspace_id: str, path: str = ".", recursive: bool = True) -> Any:
        return await self.request("GET", self._ws(workspace_id, "/files"),
                                  params={"path": path, "recursive": str(recursive).lower()})

    async def read_file(self, workspace_id: str, path: str) -> bytes:
        try:
            response = await self.http.get(self._ws(workspace_id, "/files/content"), params={"path": path})
            response.raise_for_status()
        except Exception as exc:
            raise PanelError(readable(exc), status_of(exc)) from exc
        return response.content

    async def write_file(self, workspace_id: str, path: str, content: bytes) -> Any:
        return await self.request("PUT", self._ws(workspace_id, "/files/content"), params={"path": path},
                                  content=content, headers={"Content-Type": "application/octet-stream"})

    async def delete_file(self, workspace_id: str, path: str) -> Any:
        return await self.request("DELETE", self._ws(workspace_id, "/files"), params={"path": path})

    async def exec(self, workspace_id: str, command: str, cwd: str | None = None,
                   timeout: float | None = None) -> dict[str, Any]:
        return await self.request("POST", self._ws(workspace_id, "/exec"),
                                  json=_params(command=command, cwd=cwd, timeout=timeout))

    def exec_stream(self, workspace_id: str, command: str, cwd: str | None = None,
                    timeout: float | None = None) -> AsyncIterator[tuple[str, str, Any]]:
        return self.sse("POST", self._ws(workspace_id, "/exec"), params={"stream": "true"},
                        json=_params(command=command, cwd=cwd, timeout=timeout))

    async def start_process(self, workspace_id: str, command: str, cwd: str | None = None) -> dict[str, Any]:
        return await self.request("POST", self._ws(workspace_id, "/processes"), json=_params(command=command, cwd=cwd))

    async def processes(self, workspace_id: str) -> list[dict[str, Any]]:
        return await self.request("GET", self._ws(workspace_id, "/processes"))

    async def process(self, workspace_id: str, pid: str) -> dict[str, Any]:
        return await self.request("GET", self._ws(workspace_id, f"/processes/{quote(str(pid), safe='')}"))

    async def stop_process(self, workspace_id: str, pid: str) -> Any:
        return await self.request("DELETE", self._ws(workspace_id, f"/processes/{quote(str(pid), safe='')}"))

    async def snapshots(self, workspace_id: str) -> Any:
        return await self.request("GET", self._ws(workspace_id, "/snapshots"))

    async def take_snapshot(self, workspace_id: str, label: str | None = None) -> dict[str, Any]:
        return await self.request("POST", self._ws(workspace_id, "/snapshots"), json=_params(label=label))

    async def snapshot_diff(self, workspace_id: str, snapshot_id: str) -> Any:
        return await self.request("GET", self._ws(workspace_id, f"/snapshots/{quote(snapshot_id, safe='')}/diff"))

    async def restore_snapshot(self, workspace_id: str, snapshot_id: str) -> Any:
        return await self.request("POST", self._ws(workspace_id, f"/snapshots/{quote(snapshot_id, safe='')}/restore"))
