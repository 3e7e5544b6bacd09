"""The OpenAPI document says the streaming operations answer server-sent events, not JSON (pure:
the FastAPI app built without Ray or a database). The fuzzer's content-type check found all three
run streams documented as JSON once its generated runs named a real assistant."""

from __future__ import annotations

from quadracode_ray.config import Settings
from serve_app.asgi import create_fastapi_app
from serve_app.context import AppContext
from serve_app.openapi_schema import SSE_OPERATIONS
from tests.api.graphs import TEST_GRAPHS


def test_every_stream_is_documented_as_event_stream_and_nothing_else_changed() -> None:
    spec = create_fastapi_app(AppContext(Settings(_env_file=None, graphs=TEST_GRAPHS))).openapi()
    for method, path in SSE_OPERATIONS:
        assert list(spec["paths"][path][method]["responses"]["200"]["content"]) == ["text/event-stream"], (method, path)
    assert "application/json" in spec["paths"]["/threads/{thread_id}/runs/wait"]["post"]["responses"]["200"]["content"]
    streams = {(method, path) for path, item in spec["paths"].items() for method in item
               if path.endswith(("/stream", "/stream/events")) and path != "/events/stream"}
    assert streams == SSE_OPERATIONS
