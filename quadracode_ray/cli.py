"""The ``quadracode-ray`` command: up, down, status, config, panel, ingress-env."""

from __future__ import annotations

import argparse
import json
import sys
import time

from rich.console import Console
from rich.markup import escape

from quadracode_ray import __version__
from quadracode_ray.config import Settings, SettingsError, load_settings

console = Console(stderr=True, highlight=False, soft_wrap=True)


def _report(line: str) -> None:
    style = "green" if line.startswith("✓") else "dim"
    console.print(line, style=style)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from quadracode_ray.launcher.system import up

    started = time.monotonic()
    result = up(settings, report=_report, cluster_postgres=args.cluster_postgres)
    out = Console(highlight=False, soft_wrap=True)
    out.print()
    out.print(f"[bold]Quadracode-Ray is up[/bold] (ready in {time.monotonic() - started:.1f} s).")
    out.print(f"  LangGraph API   {result.api_url}   (docs: {result.api_url}/docs)")
    if settings.panel_enabled:
        out.print(f"  Control panel   {result.api_url}/ui/")
    out.print(f"  Metrics         {result.api_url}/metrics   (Prometheus text: the API and every actor)")
    out.print(f"  Ray dashboard   {result.dashboard_url}   ({_dashboard_access(result.dashboard_url)})")
    out.print(f"  Ray address     {result.ray_address}")
    where = "embedded, in " + str(settings.embedded_pgdata) if result.embedded_postgres else (
        "the cluster's, on TCP (password in " + str(settings.data_dir / "cluster-postgres.password") + ")"
        if args.cluster_postgres and not settings.database_url else "external")
    out.print(f"  Postgres        {where}")
    model_note = "  [yellow](no API key set: the built-in scripted model answers)[/yellow]" if result.scripted_model else ""
    out.print(f"  Model           {result.model}{model_note}")
    for check in result.checks:
        mark = "[green]✓[/green]" if check.ok else "[yellow]![/yellow]"
        out.print(f"  {mark} {check.name}: {check.detail}")
    out.print("Stop with `quadracode-ray down` (data is kept).")
    return 0


def _dashboard_access(dashboard_url: str) -> str:
    """What the dashboard asks of a visitor, as the dashboard itself answers it now."""
    from quadracode_ray.launcher.ray_head import dashboard_needs_token

    needs = dashboard_needs_token(dashboard_url)
    if needs is None:
        return "not answering"
    if needs:
        return "token auth on: `ray get-auth-token` prints the token"
    return "no token: anyone who reaches this address can use it and submit jobs"


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    from quadracode_ray.launcher.system import down

    started = time.monotonic()
    state = down(settings, report=_report)
    if state.ray is None and state.postgres is None:
        console.print("Nothing was running (no state from `up`).")
    else:
        console.print(f"Quadracode-Ray is down in {time.monotonic() - started:.1f} s; data kept in {settings.data_dir}")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from quadracode_ray.launcher.system import status

    result = status(settings)
    if args.json:
        print(json.dumps({c.name: {"ok": c.ok, "detail": c.detail} for c in result.checks}, indent=2))
    else:
        out = Console(highlight=False, soft_wrap=True)
        for check in result.checks:
            mark = "[green]running[/green]" if check.ok else "[red]down[/red]"
            out.print(f"{check.name:<9} {mark:<30} {check.detail}")
    return 0 if result.running else 3


def cmd_config(settings: Settings, args: argparse.Namespace) -> int:
    if args.env_sample:
        from quadracode_ray.config import render_env_sample

        print(render_env_sample(), end="")
        return 0
    shown = settings.model_dump(mode="json")
    shown["default_model (derived)"] = settings.default_model
    print(json.dumps(shown, indent=2, default=str))
    return 0


def cmd_panel(settings: Settings, args: argparse.Namespace) -> int:
    import importlib

    import httpx

    url = args.url.rstrip("/")
    try:
        httpx.get(f"{url}/ok", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/red] the API at {url} does not answer /ok ({exc})")
        return 1
    # By import path, as the launcher names the Serve app: the core does not import the layers above it.
    standalone = importlib.import_module("serve_app.panel.standalone")
    console.print(f"Control panel for {url} at http://{args.host}:{args.port}/ui/  (Ctrl-C stops it)")
    standalone.serve(url, host=args.host, port=args.port)
    return 0


def cmd_ingress_env(settings: Settings, args: argparse.Namespace) -> int:
    """The environment a node's ``ray start`` needs for the serve_ingress setting, as shell words
    (cluster.yaml: ``env $(quadracode-ray ingress-env) ray start ...``); nothing for ``proxy``."""
    from quadracode_ray.serve_ingress import IngressUnavailable, ingress_env, shell_words

    try:
        print(shell_words(ingress_env(settings.serve_ingress)))
    except IngressUnavailable as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quadracode-ray", description="An always-on runtime for AI agent work on Ray.")
    parser.add_argument("--version", action="version", version=f"quadracode-ray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start (or join) Ray, Postgres and the Serve app; print the URLs")
    up.add_argument("--cluster-postgres", action="store_true",
                    help="on a cluster's head (cluster.yaml): run Postgres on TCP with a password for every node")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop what `up` started; keep the data").set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="say what is running (exit 0 when the system is up, 3 when not)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    config = sub.add_parser("config", help="print the effective settings (secrets masked)")
    config.add_argument("--env-sample", action="store_true", help="print the documented .env.sample instead")
    config.set_defaults(func=cmd_config)
    panel = sub.add_parser("panel", help="serve the control panel alone, against the API at --url")
    panel.add_argument("--url", required=True, help="the API's base URL, e.g. http://head:8000")
    panel.add_argument("--host", default="127.0.0.1", help="address to serve the panel on")
    panel.add_argument("--port", type=int, default=7860, help="port to serve the panel on")
    panel.set_defaults(func=cmd_panel)
    sub.add_parser("ingress-env", help="print the environment a node's `ray start` needs for the serve_ingress "
                   "setting (NAME=value words; none for proxy)").set_defaults(func=cmd_ingress_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    try:
        return args.func(settings, args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a CLI shows one clear line, not a traceback, for expected failures
        from quadracode_ray.launcher.ray_head import RayHeadError
        from quadracode_ray.launcher.serve_deploy import ServeDeployError
        from quadracode_ray.persistence import MigrationError

        if isinstance(exc, RayHeadError | ServeDeployError | MigrationError):
            # The message may quote HAProxy's or Ray's output, brackets and all: not markup.
            console.print(f"[red]error:[/red] {escape(str(exc))}")
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
