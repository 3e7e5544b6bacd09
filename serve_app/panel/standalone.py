"""The control panel on its own, against a remote system: ``quadracode-ray panel --url URL``.

It serves only the panel (at ``/ui``, with ``/`` redirecting there) and calls the API at ``URL``
over HTTP, exactly as when mounted on the API's ingress."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from serve_app.panel.app import mount_panel
from serve_app.panel.ui_common import MOUNT_PATH


def create_standalone_app(api_url: str) -> FastAPI:
    app = FastAPI(title="Quadracode-Ray control panel")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{MOUNT_PATH}/")

    return mount_panel(app, api_url=api_url)


def serve(api_url: str, host: str = "127.0.0.1", port: int = 7860) -> None:
    import uvicorn

    uvicorn.run(create_standalone_app(api_url), host=host, port=port, log_level="warning")
