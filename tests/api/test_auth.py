"""API-key auth over real HTTP: a second deployment of the real app with keys configured."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import AuthenticationError, NotFoundError, PermissionDeniedError

from serve_app.auth_keys import ApiKeys, AuthConfigError, presented_key
from tests.api.conftest import undeploy
from tests.api.graphs import TEST_GRAPHS

ALICE_KEY = "alice-" + uuid.uuid4().hex
BOB_KEY = "bob-" + uuid.uuid4().hex
BOB_SPARE_KEY = "bob-spare-" + uuid.uuid4().hex


def deploy_with_extras(app_name: str, route_prefix: str, base_url: str, settings: dict[str, Any]) -> str:
    """Deploy the real app with auth and request metrics installed, as ``build_app`` should do.

    Installing twice is a no-op, so this stays right once ``create_fastapi_app`` installs them.
    """
    from ray import serve

    from quadracode_ray.config import load_settings
    from serve_app.asgi import create_fastapi_app
    from serve_app.auth import install_auth
    from serve_app.context import AppContext
    from serve_app.metrics_http import install_http_metrics

    @serve.deployment(name="api", ray_actor_options={"num_cpus": 0})
    @serve.ingress()
    class ApiWithExtras:
        def __init__(self, overrides: dict[str, Any]):
            self.context = AppContext(load_settings(**overrides))

        def __serve_build_asgi_app__(self):
            app = create_fastapi_app(self.context)
            install_auth(app)
            install_http_metrics(app)
            return app

    serve.run(ApiWithExtras.bind(settings), name=app_name, route_prefix=route_prefix, blocking=False)
    url = base_url + route_prefix
    assert httpx.get(f"{url}/ok", timeout=60).json() == {"ok": True}
    return url


@pytest.fixture(scope="module")
def secured_url(serve_http_port: int, database_url: str, tmp_path_factory) -> Iterator[str]:

    app_name = f"secured-{uuid.uuid4().hex[:6]}"
    keys = json.dumps({"alice": ALICE_KEY, "bob": [BOB_KEY, BOB_SPARE_KEY]})
    url = deploy_with_extras(app_name, f"/{app_name}", f"http://127.0.0.1:{serve_http_port}", {
        "database_url": database_url, "data_dir": str(tmp_path_factory.mktemp("secured")),
        "auth_api_keys": keys, "graphs": TEST_GRAPHS,
    })
    yield url
    undeploy(app_name, database_url)


# --- pure logic ---------------------------------------------------------------------------------
def test_keys_map_to_owners() -> None:
    keys = ApiKeys.parse(json.dumps({"alice": ALICE_KEY, "bob": [BOB_KEY, BOB_SPARE_KEY]}))
    assert keys.enabled
    assert keys.owner_of(ALICE_KEY) == "alice"
    assert keys.owner_of(BOB_SPARE_KEY) == "bob"
    assert keys.owner_of("nope" * 8) is None
    assert not ApiKeys.parse(None).enabled


@pytest.mark.parametrize("text, reason", [
    ("not json", "must be JSON"),
    ("[]", "non-empty JSON object"),
    ('{"alice": "short"}', "at least 16"),
    ('{"bad owner": "0123456789abcdef"}', "letters, digits"),
    ('{"alice\\n": "0123456789abcdef"}', "letters, digits"),
    ('{"a": "0123456789abcdef", "b": "0123456789abcdef"}', "given to both"),
    ('{"a": 5}', "must be a string"),
])
def test_malformed_key_settings_are_refused(text: str, reason: str) -> None:
    with pytest.raises(AuthConfigError, match=reason):
        ApiKeys.parse(text)


def test_presented_key_reads_bearer_and_x_api_key() -> None:
    assert presented_key({"authorization": "Bearer abc"}) == "abc"
    assert presented_key({"authorization": "bearer  abc "}) == "abc"
    assert presented_key({"x-api-key": "xyz"}) == "xyz"
    assert presented_key({"authorization": "Basic abc"}) is None
    assert presented_key({}) is None


# --- over HTTP -----------------------------------------------------------------------------------
def test_health_routes_stay_open(secured_url: str) -> None:
    assert httpx.get(f"{secured_url}/ok").status_code == 200
    assert httpx.get(f"{secured_url}/health").status_code == 200


@pytest.mark.parametrize("path", ["/info", "/metrics", "/openapi.json", "/docs", "/no-such-route"])
def test_every_other_route_needs_a_key(secured_url: str, path: str) -> None:
    response = httpx.get(secured_url + path)
    assert response.status_code == 401
    assert "API key" in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_unknown_key_is_forbidden(secured_url: str) -> None:
    response = httpx.get(f"{secured_url}/info", headers={"Authorization": "Bearer " + "x" * 40})
    assert response.status_code == 403
    assert response.json() == {"detail": "Invalid API key."}


async def test_sdk_with_api_key_gets_in_and_without_is_refused(secured_url: str) -> None:
    alice = get_client(url=secured_url, api_key=ALICE_KEY)
    await alice.store.put_item(["notes"], "n1", {"text": "hi"})
    assert (await alice.store.get_item(["notes"], "n1"))["value"] == {"text": "hi"}

    anonymous = get_client(url=secured_url, api_key=None)
    anonymous.http.client.headers.pop("x-api-key", None)  # the SDK reads LANGGRAPH_API_KEY too
    with pytest.raises(AuthenticationError):
        await anonymous.store.get_item(["notes"], "n1")
    wrong = get_client(url=secured_url, api_key="w" * 32)
    with pytest.raises(PermissionDeniedError):
        await wrong.store.get_item(["notes"], "n1")


async def test_store_is_private_to_its_owner(secured_url: str) -> None:
    alice = get_client(url=secured_url, api_key=ALICE_KEY)
    bob = get_client(url=secured_url, api_key=BOB_KEY)
    bob_spare = get_client(url=secured_url, api_key=BOB_SPARE_KEY)
    await alice.store.put_item(["shared", "name"], "k", {"owner": "alice"})
    await bob.store.put_item(["shared", "name"], "k", {"owner": "bob"})

    assert (await alice.store.get_item(["shared", "name"], "k"))["value"] == {"owner": "alice"}
    assert (await bob_spare.store.get_item(["shared", "name"], "k"))["value"] == {"owner": "bob"}
    alice_items = (await alice.store.search_items(["shared"]))["items"]
    assert [item["value"] for item in alice_items] == [{"owner": "alice"}]
    assert alice_items[0]["namespace"] == ["shared", "name"]
    assert ["shared", "name"] in (await bob.store.list_namespaces())["namespaces"]
    assert all(not ns[0].startswith("~") for ns in (await bob.store.list_namespaces())["namespaces"])

    await bob.store.delete_item(["shared", "name"], "k")
    assert await bob.store.get_item(["shared", "name"], "k") is None
    assert (await alice.store.get_item(["shared", "name"], "k"))["value"] == {"owner": "alice"}


async def test_threads_assistants_and_crons_are_scoped_to_their_owner(secured_url: str) -> None:
    alice = get_client(url=secured_url, api_key=ALICE_KEY)
    bob = get_client(url=secured_url, api_key=BOB_KEY)
    assistant = await alice.assistants.create("echo", name="alice-only")
    thread = await alice.threads.create(metadata={"owner_test": "alice"})
    cron = await alice.crons.create_for_thread(thread["thread_id"], "echo", schedule="0 0 1 1 *")
    assert cron["user_id"] == "alice"

    with pytest.raises(NotFoundError):
        await bob.threads.get(thread["thread_id"])
    with pytest.raises(NotFoundError):
        await bob.assistants.get(assistant["assistant_id"])
    with pytest.raises(NotFoundError):
        await bob.http.get(f"/runs/crons/{cron['cron_id']}")
    with pytest.raises(NotFoundError):
        await bob.crons.delete(cron["cron_id"])
    with pytest.raises(NotFoundError):  # nor can bob schedule runs on alice's thread
        await bob.crons.create_for_thread(thread["thread_id"], "echo", schedule="0 0 1 1 *")
    assert await bob.crons.count(thread_id=thread["thread_id"]) == 0
    assert await bob.threads.search(metadata={"owner_test": "alice"}) == []

    assert (await alice.threads.get(thread["thread_id"]))["thread_id"] == thread["thread_id"]
    assert await alice.crons.count(thread_id=thread["thread_id"]) == 1


async def test_v3_thread_streams_are_scoped_to_their_owner(secured_url: str) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    def headers(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    body = {"channels": ["values", "lifecycle"]}
    start = {"id": 1, "method": "run.start", "params": {"assistant_id": "echo", "input": {"items": ["x"]}}}
    alices = str(uuid.uuid4())  # minted by alice's client
    async with httpx.AsyncClient(base_url=secured_url, timeout=60) as http:
        started = await http.post(f"/threads/{alices}/commands", json=start, headers=headers(ALICE_KEY))
        assert started.json()["type"] == "success", started.text
        refused = await http.post(f"/threads/{alices}/stream/events", json=body, headers=headers(BOB_KEY))
        assert refused.status_code == 404
        with pytest.raises(InvalidStatus):  # nor over a WebSocket
            async with connect(secured_url.replace("http://", "ws://") + f"/threads/{alices}/stream/events",
                               additional_headers=headers(BOB_KEY)):
                pass

        # Bob waits on an id nobody has created; alice then creates it: bob's stream ends, empty.
        claimed = str(uuid.uuid4())
        async with http.stream("POST", f"/threads/{claimed}/stream/events", json=body,
                               headers=headers(BOB_KEY)) as waiting:
            assert waiting.status_code == 200
            started = await http.post(f"/threads/{claimed}/commands", json=start, headers=headers(ALICE_KEY))
            assert started.json()["type"] == "success", started.text
            async with asyncio.timeout(60):
                lines = [line async for line in waiting.aiter_lines()]
        assert not [line for line in lines if line.startswith("data:")]

        # Alice's own stream of the thread has its events.
        async with asyncio.timeout(60), http.stream("POST", f"/threads/{claimed}/stream/events", json=body,
                                                    headers=headers(ALICE_KEY)) as mine:
            assert mine.status_code == 200
            async for line in mine.aiter_lines():
                if line.startswith("data:") and '"completed"' in line:
                    break
            else:
                raise AssertionError("alice's stream ended before her run completed")
