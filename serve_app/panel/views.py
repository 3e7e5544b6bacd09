"""Pure formatting and filtering for the panel's tables: threads, runs, checkpoints, events,
the fleet and workspaces. Every function takes what the API returned (tolerating missing
fields) and gives rows of strings or plain text; none does I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from quadracode_ray.envelope import text_pattern
from serve_app.panel.client import PanelError


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def short_time(value: Any) -> str:
    parsed = _parse_time(value)
    return parsed.strftime("%H:%M:%S") if parsed else ""


def seconds_between(start: Any, end: Any) -> str:
    began, ended = _parse_time(start), _parse_time(end)
    if not began or not ended:
        return ""
    return f"{(ended - began).total_seconds():.1f} s"


def parse_metadata_filter(text: str) -> dict[str, Any]:
    """``key=value, key2=value2`` or a JSON object, as a metadata filter."""
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise PanelError(f"metadata filter is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise PanelError("metadata filter must be a JSON object")
        return value
    result = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise PanelError(f"metadata filter {part.strip()!r} is not key=value")
        result[key.strip()] = value.strip()
    return result


THREAD_HEADERS = ["thread_id", "status", "updated", "tokens", "cost", "metadata"]


def usage_of(metadata: Any) -> tuple[str, str]:
    """(tokens, cost) a thread spent on models, from its metadata's ``usage`` (``total_tokens``,
    ``cost_usd``) when the system records it; blank when it does not."""
    usage = metadata.get("usage") if isinstance(metadata, dict) else None
    if not isinstance(usage, dict):
        return "", ""
    tokens, cost = usage.get("total_tokens"), usage.get("cost_usd")
    return (f"{tokens:,}" if isinstance(tokens, int) else "",
            f"${cost:.4f}" if isinstance(cost, (int, float)) else "")


def thread_rows(threads: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for t in threads:
        metadata = t.get("metadata") or {}
        shown = {k: v for k, v in metadata.items() if k != "usage"} if isinstance(metadata, dict) else metadata
        rows.append([str(t.get("thread_id", "")), str(t.get("status", "")), short_time(t.get("updated_at")),
                     *usage_of(metadata), json.dumps(shown, ensure_ascii=False)[:120]])
    return rows


def column_has(table: Any, column: int, values: tuple[str, ...]) -> bool:
    """Whether any row of a shown table (a DataFrame or a list of rows) has one of ``values`` in
    ``column``."""
    rows = table.values.tolist() if hasattr(table, "values") and hasattr(table, "columns") else table or []
    return any(len(row) > column and str(row[column]) in values for row in rows)


RUN_HEADERS = ["run_id", "assistant", "status", "started", "duration"]


def run_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for run in runs:
        finished = run.get("status") not in ("pending", "running")
        rows.append([str(run.get("run_id", "")), str(run.get("assistant_id", ""))[:12], str(run.get("status", "")),
                     short_time(run.get("created_at")),
                     seconds_between(run.get("created_at"), run.get("updated_at")) if finished else "running"])
    return rows


CHECKPOINT_HEADERS = ["checkpoint_id", "step", "source", "next", "messages", "created"]


def checkpoint_id_of(state: dict[str, Any]) -> str:
    checkpoint = state.get("checkpoint") or {}
    return str(checkpoint.get("checkpoint_id") or state.get("checkpoint_id") or "")


def checkpoint_rows(history: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for state in history:
        metadata = state.get("metadata") or {}
        values = state.get("values") or {}
        messages = values.get("messages") if isinstance(values, dict) else None
        rows.append([checkpoint_id_of(state), str(metadata.get("step", "")), str(metadata.get("source", "")),
                     ", ".join(state.get("next") or []), str(len(messages)) if isinstance(messages, list) else "",
                     short_time(state.get("created_at"))])
    return rows


def first_cell(table: Any) -> str:
    """The first row's first cell of a shown table (a DataFrame or a list of rows); '' if empty."""
    rows = table.values.tolist() if hasattr(table, "values") and hasattr(table, "columns") else table or []
    return str(rows[0][0]) if rows and len(rows[0]) else ""


# --- events ---------------------------------------------------------------------------------------
EVENT_HEADERS = ["time", "sender", "recipient", "kind", "thread", "id"]


@dataclass(frozen=True)
class EventFilter:
    """The monitor's filters, applied to live events as the server applies them to history."""

    sender: str = ""
    recipient: str = ""
    kind: str = ""
    thread_id: str = ""
    regex: str = ""

    def compiled(self) -> Any:
        """The server's own pattern type (RE2), so a pattern matches here as it does there and a
        backtracking one cannot stall the panel's event loop."""
        if not self.regex:
            return None
        try:
            return text_pattern(self.regex)
        except ValueError as exc:
            raise PanelError(f"bad regex {self.regex!r}: {exc}") from None

    def query(self) -> dict[str, str]:
        self.compiled()  # a bad regex is refused before any request
        return {key: value for key, value in (("sender", self.sender), ("recipient", self.recipient),
                                              ("kind", self.kind), ("thread_id", self.thread_id),
                                              ("regex", self.regex)) if value}

    def matches(self, event: dict[str, Any]) -> bool:
        envelope = envelope_of(event)
        for key in ("sender", "recipient", "kind", "thread_id"):
            wanted = getattr(self, key)
            if wanted and str(envelope.get(key) or "") != wanted:
                return False
        pattern = self.compiled()
        return pattern is None or bool(pattern.search(envelope_text(envelope)))


def envelope_of(event: dict[str, Any]) -> dict[str, Any]:
    """The envelope of an event-log entry (entries may wrap it with a sequence number)."""
    inner = event.get("envelope")
    return inner if isinstance(inner, dict) else event


def envelope_text(envelope: dict[str, Any]) -> str:
    """What the regex filter searches: the payload as compact JSON (as the server's filter)."""
    return json.dumps(envelope.get("payload") or {}, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def event_row(event: dict[str, Any]) -> list[str]:
    envelope = envelope_of(event)
    return [short_time(envelope.get("created_at") or event.get("created_at")), str(envelope.get("sender", "")),
            str(envelope.get("recipient", "")), str(envelope.get("kind", "")),
            str(envelope.get("thread_id") or "")[:36], str(envelope.get("id", ""))]


def events_page(body: Any) -> tuple[list[dict[str, Any]], str | None]:
    """(events, cursor of the next older page) from a ``GET /events`` answer."""
    if isinstance(body, list):
        return body, None
    if isinstance(body, dict):
        events = body.get("events") or body.get("items") or []
        return list(events), body.get("next_cursor") or body.get("cursor")
    return [], None


# --- fleet ----------------------------------------------------------------------------------------
FLEET_HEADERS = ["agent_id", "kind", "capabilities", "node", "workspace", "heartbeat", "healthy", "hotpath",
                 "task", "thread"]


def fleet_rows(agents: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for agent in agents:
        age = agent.get("heartbeat_age_s")
        rows.append([str(agent.get("agent_id", "")), str(agent.get("kind", "")),
                     ", ".join(agent.get("capabilities") or []), str(agent.get("node_id") or agent.get("node") or "")[:12],
                     str(agent.get("workspace_id") or agent.get("workspace") or ""),
                     f"{age:.1f} s ago" if isinstance(age, (int, float)) else "",
                     "yes" if agent.get("healthy") else "no", "yes" if agent.get("hotpath") else "no",
                     str(agent.get("current_task_id") or ""), str(agent.get("current_thread_id") or "")])
    return rows


def fleet_summary(fleet: dict[str, Any]) -> str:
    keys = [("cap", "cap"), ("alive", "alive"), ("busy", "busy"), ("spawning", "spawning")]
    parts = [f"**{label}** {fleet.get(key)}" for key, label in keys if key in fleet]
    hot = fleet.get("hotpath")
    if hot:
        parts.append(f"**hotpath** {', '.join(hot)}")
    nodes = [n for n in fleet.get("nodes") or [] if isinstance(n, dict)]
    if nodes:
        parts.append("per node: " + ", ".join(f"{str(n.get('node') or '?')[:12]} {n.get('alive', 0)} alive / "
                                              f"{n.get('busy', 0)} busy" for n in nodes))
    return " · ".join(parts) or json.dumps(fleet)


def parse_capabilities(text: str) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


# --- workspaces -----------------------------------------------------------------------------------
WORKSPACE_HEADERS = ["workspace_id", "status", "limits", "disk", "node"]


def workspace_rows(workspaces: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for ws in workspaces:
        limits = ws.get("limits") or {}
        disk = ws.get("disk_usage_bytes", ws.get("disk_bytes"))
        rows.append([str(ws.get("workspace_id", "")), str(ws.get("status", "")),
                     ", ".join(f"{k}={v}" for k, v in limits.items()) if isinstance(limits, dict) else str(limits),
                     human_bytes(disk) if isinstance(disk, (int, float)) else "", str(ws.get("node_id") or ws.get("node") or "")[:12]])
    return rows


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def file_entries(body: Any) -> list[dict[str, Any]]:
    """The entries of a ``GET /workspaces/{id}/files`` listing."""
    if isinstance(body, dict):
        body = body.get("entries") or []
    return [entry for entry in body or [] if isinstance(entry, dict)]


PROCESS_HEADERS = ["process_id", "pid", "command", "status", "exit"]


def process_rows(processes: list[dict[str, Any]]) -> list[list[str]]:
    return [[str(p.get("process_id", "")), str(p.get("pid", "")), str(p.get("command", ""))[:80],
             str(p.get("status", "")), "" if p.get("exit_code") is None else str(p.get("exit_code"))]
            for p in processes if isinstance(p, dict)]


def status_markdown(status: dict[str, Any]) -> str:
    """``GET /system/status`` as a short report: nodes, actors, Postgres, Docker, the model."""
    lines = []
    model = status.get("model") or {}
    if isinstance(model, dict) and model:
        lines.append(f"**Model in use:** `{model.get('model')}`" + (" (the offline scripted model)"
                                                                      if model.get("scripted") else ""))
    for node in status.get("nodes") or []:
        cpus = (node.get("resources") or {}).get("CPU")
        lines.append(f"- node `{str(node.get('node_id'))[:12]}` {'alive' if node.get('alive') else 'DEAD'}"
                     + (f", {cpus:g} CPU" if isinstance(cpus, (int, float)) else ""))
    actors = status.get("actors") or []
    if actors:
        silent = [a.get("name") for a in actors if not a.get("answers")]
        lines.append(f"- actors: {len(actors) - len(silent)}/{len(actors)} answer"
                     + (f" (silent: {', '.join(map(str, silent))})" if silent else ""))
    postgres = status.get("postgres") or {}
    if postgres:
        lines.append(f"- Postgres: {'ok' if postgres.get('ok') else 'DOWN ' + str(postgres.get('error') or '')}"
                     + (f" ({postgres.get('latency_ms')} ms)" if postgres.get("latency_ms") is not None else ""))
    for docker in status.get("docker") or []:
        lines.append(f"- Docker on `{str(docker.get('node_id'))[:12]}`: "
                     + (f"ok, {docker.get('containers_running')} containers" if docker.get("ok")
                        else f"DOWN {docker.get('error') or ''}"))
    return "\n".join(lines) or "(no status)"


def file_tree(entries: list[dict[str, Any]]) -> str:
    """An indented tree (directories first) for the file browser."""
    lines = []
    for entry in sorted(entries, key=lambda e: str(e.get("path", ""))):
        path = PurePosixPath(str(entry.get("path", "")).lstrip("./") or ".")
        is_dir = entry.get("is_dir") or entry.get("type") in ("dir", "directory")
        size = entry.get("size")
        depth = len(path.parts) - 1
        label = path.name + ("/" if is_dir else "")
        detail = "" if is_dir or size is None else f"  ({human_bytes(size)})"
        lines.append("  " * depth + label + detail)
    return "\n".join(lines) or "(empty)"


def file_paths(entries: list[dict[str, Any]]) -> list[str]:
    return sorted(str(e.get("path", "")) for e in entries
                  if not (e.get("is_dir") or e.get("type") in ("dir", "directory")))


LANGUAGES = {".py": "python", ".c": "c", ".h": "c", ".cpp": "cpp", ".cc": "cpp", ".hpp": "cpp",
             ".md": "markdown", ".tex": "latex", ".json": "json", ".html": "html", ".css": "css",
             ".js": "javascript", ".mjs": "javascript", ".ts": "typescript", ".yaml": "yaml", ".yml": "yaml",
             ".sh": "shell", ".bash": "shell", ".r": "r", ".sql": "sql", ".j2": "jinja2"}


def language_for(path: str) -> str | None:
    name = PurePosixPath(path).name.lower()
    if name == "dockerfile":
        return "dockerfile"
    return LANGUAGES.get(PurePosixPath(name).suffix)


def decode_text(data: bytes) -> str | None:
    """The file as text, or None when it is binary (offered as a download instead)."""
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def diff_markdown(body: Any) -> str:
    """A snapshot diff as added / removed / modified lists."""
    if not isinstance(body, dict):
        return f"```\n{body}\n```"
    sections = []
    for key, mark in (("added", "+"), ("removed", "-"), ("modified", "~")):
        paths = body.get(key) or []
        listed = "\n".join(f"- `{mark} {path}`" for path in paths) or "- (none)"
        sections.append(f"**{key}** ({len(paths)})\n{listed}")
    return "\n\n".join(sections)


def snapshot_choices(body: Any) -> list[tuple[str, str]]:
    items = body if isinstance(body, list) else []
    choices = []
    for snap in items or []:
        if isinstance(snap, dict):
            sid = str(snap.get("snapshot_id") or snap.get("id") or "")
            label = snap.get("label") or ""
            choices.append((f"{sid} {label} {short_time(snap.get('created_at'))}".strip(), sid))
    return choices


def events_table(events: list[dict[str, Any]]) -> list[list[str]]:
    return [event_row(event) for event in events]
