"""What an assistant's config sets in the built-in graphs, and how each graph reads it.

An assistant of graph ``orchestrator`` or ``agent`` may set, in ``config["configurable"]`` (or
its ``context``, which mirrors it)::

    {"model": "anthropic:claude-sonnet-4-5",    # provider:model; default: the installation's
     "system_prompt": "You review Python code.",   # default: the graph's own prompt
     "context_token_budget": 16000,                # default: QUADRACODE_CONTEXT_TOKEN_BUDGET
     "guardrails": {"max_iterations": 10},         # per field; unset fields follow the operator's
     "mcp_servers": {"docs": {"transport": "http", "url": "http://docs:8000/mcp"}},
     "agents": {"system_prompt": "You write tests.", "model": "openai:gpt-4o-mini"}}

A task the orchestrator delegates carries ``delegated_task_config``: the delegating assistant's
``model``, ``context_token_budget``, ``guardrails`` and ``mcp_servers``, each replaced by its
``agents`` field when set (``system_prompt`` only from ``agents``: the orchestrator's prompt
is no agent's). The agent actor builds the task's graph with it (``actors.brains``).

Updating the assistant (PATCH) makes a new version, as any change; runs use the version that
is latest when they start. ``AssistantConfigurable`` is the graphs' context schema, so
``/assistants/{id}/schemas`` shows these keys; other keys (the runtime's, a caller's) pass.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from quadracode_ray.config import KNOWN_PROVIDERS, Settings
from quadracode_ray.graphs.context import ContextPolicy
from quadracode_ray.graphs.control import Guardrails, GuardrailSource, current_guardrails
from quadracode_ray.tools.mcp_config import McpServer, McpServers


class GuardrailLimits(BaseModel):
    """An assistant's guardrails: each field set replaces the installation's for its runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_iterations: int | None = Field(default=None, ge=1, description="Model calls since the last human input.")
    max_wall_clock_s: float | None = Field(default=None, gt=0, description="Seconds since the last human input.")
    max_agents_per_thread: int | None = Field(default=None, ge=0, description="Agents spawned before asking again.")


class _GraphSettings(BaseModel):
    """What a built-in graph's run is given: a model, a prompt, a context budget, guardrails."""

    model: str | None = Field(default=None, pattern=rf"^({'|'.join(KNOWN_PROVIDERS)}):.+$",
                              description="The chat model, as provider:model (e.g. openai:gpt-4o, scripted:default).")
    system_prompt: str | None = Field(default=None, min_length=1, max_length=100_000,
                                      description="Replaces the graph's built-in system prompt.")
    context_token_budget: int | None = Field(default=None, ge=200, le=2_000_000,
                                             description="The prompt size (estimated tokens) to stay under.")
    guardrails: GuardrailLimits | None = Field(default=None, description="Autonomy limits for the runs.")


class DelegatedAgentSettings(_GraphSettings):
    """What the agents doing this assistant's delegated tasks run with; an unset field inherits
    the assistant's own (``system_prompt`` excepted: agents keep the agent graph's prompt)."""

    model_config = ConfigDict(extra="forbid", title="DelegatedAgentSettings")
    mcp_servers: dict[str, McpServer] | None = Field(default=None, description="MCP servers whose tools the agents "
                                                     "get instead of this assistant's.")


class AssistantConfigurable(_GraphSettings):
    """The keys of an assistant's configurable that the built-in graphs read."""

    model_config = ConfigDict(extra="allow", title="AssistantConfigurable")
    mcp_servers: dict[str, McpServer] = Field(default_factory=dict, description="MCP servers whose tools the graph "
                                              "gets, by name (the prefix of their tools: <name>__<tool>); the "
                                              "agents of its delegated tasks get them too.")
    agents: DelegatedAgentSettings | None = Field(default=None, description="Settings for the agents doing this "
                                                  "assistant's delegated tasks (orchestrator graph).")


class AssistantConfigError(ValueError):
    """An assistant's configurable does not fit the built-in graphs; the message says where."""


# Keys of configurable that hold clients the hosting actor injects, never JSON from a caller.
_CLIENT_KEYS = ("workspace", "fleet", "delegation", "stop", "events", "guardrails", "host_settings")


def read_assistant_config(configurable: dict[str, Any] | None) -> AssistantConfigurable:
    """The assistant's settings from a run's configurable, validated; AssistantConfigError if bad.

    ``guardrails`` there is a client (a GuardrailSource) when the host injected one; the
    assistant's own limits then arrive as ``assistant_guardrails`` (see ``runs.execution``)."""
    values = {k: v for k, v in (configurable or {}).items()
              if k in AssistantConfigurable.model_fields and k not in _CLIENT_KEYS
              and not (k == "model" and not isinstance(v, str | None))}  # a ChatModel a caller passed
    guardrails = (configurable or {}).get("assistant_guardrails", (configurable or {}).get("guardrails"))
    if isinstance(guardrails, dict):
        values["guardrails"] = guardrails
    try:
        parsed = AssistantConfigurable.model_validate(values)
        McpServers(servers=parsed.mcp_servers)  # the names, which prefix tool names
        if parsed.agents is not None and parsed.agents.mcp_servers:
            McpServers(servers=parsed.agents.mcp_servers)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'configurable'}: {e['msg']}" for e in exc.errors())
        raise AssistantConfigError(f"invalid assistant configuration: {problems}") from None
    return parsed


_INHERITED = ("model", "context_token_budget", "guardrails", "mcp_servers")


def delegated_task_config(assistant: AssistantConfigurable) -> dict[str, Any]:
    """The assistant config a task this assistant delegates carries to its agent (JSON; empty
    when the assistant sets nothing an agent uses)."""
    own = assistant.agents.model_dump(mode="json", exclude_none=True) if assistant.agents else {}
    inherited = assistant.model_dump(mode="json", include=set(_INHERITED), exclude_none=True)
    config = {**inherited, **own}
    if not config.get("mcp_servers"):
        config.pop("mcp_servers", None)
    return config


class AssistantGuardrails:
    """The installation's guardrails (live, as an operator sets them) with an assistant's
    fields on top: a GuardrailSource read at each check, as the graphs read any."""

    def __init__(self, base: Guardrails | GuardrailSource, limits: GuardrailLimits):
        self.base, self.limits = base, limits

    async def current(self) -> Guardrails:
        base = await current_guardrails(self.base)
        return base.model_copy(update=self.limits.model_dump(exclude_none=True))


def with_assistant_guardrails(base: Guardrails | GuardrailSource | None,
                              limits: GuardrailLimits | None) -> Guardrails | GuardrailSource | None:
    if limits is None or not limits.model_dump(exclude_none=True):
        return base
    return AssistantGuardrails(base if base is not None else Guardrails(), limits)


def host_settings(configurable: dict[str, Any]) -> Settings:
    """The settings of the actor hosting the run (``actors.fabric_clients`` injects them), else
    the process's own: a host given its settings as an object (tests, ``ensure_system``) has no
    QUADRACODE_* environment to read them back from, so the model must come from these."""
    given = configurable.get("host_settings")
    if isinstance(given, Settings):
        return given
    from quadracode_ray.config import load_settings

    return load_settings()


def host_guardrails(configurable: dict[str, Any], settings: Settings) -> Guardrails | GuardrailSource:
    """The guardrails the host injected (the operator's, live), else the installation's."""
    source = configurable.get("guardrails")
    if isinstance(source, Guardrails | GuardrailSource):
        return source
    from quadracode_ray.persistence.guardrails import settings_guardrails

    return settings_guardrails(settings)


def context_policy(assistant: AssistantConfigurable, settings: Settings) -> ContextPolicy:
    return ContextPolicy(token_budget=assistant.context_token_budget or settings.context_token_budget)
