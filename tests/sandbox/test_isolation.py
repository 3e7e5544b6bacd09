"""Three workspaces side by side: each sees only its own files and processes; /shared is the one
place they meet."""

from __future__ import annotations

import asyncio

import pytest

from quadracode_ray.interfaces.workspace import PathEscapeError
from sandbox.client import get_workspace
from sandbox.testing.conformance import poll_until

pytestmark = pytest.mark.usefixtures("ray_cluster")


async def test_three_workspaces_are_isolated_and_share_only_shared(sandbox_settings):
    settings = sandbox_settings()
    names = ["iso-a", "iso-b", "iso-c"]
    clients = await asyncio.gather(*(get_workspace(n, settings) for n in names))
    try:
        for name, client in zip(names, clients, strict=True):
            await client.write_file(f"secret-{name}.txt", name.encode())
        jobs = [await c.start_process(f"exec -a qr-job-{n} sleep 300") for n, c in zip(names, clients, strict=True)]

        for name, client in zip(names, clients, strict=True):
            listing = sorted(e.path for e in await client.list_files("."))
            assert listing == [f"secret-{name}.txt"]
            seen = (await client.exec("ps -eo args | grep -o '^qr-job-[a-z-]*' || true")).stdout.split()
            assert seen == [f"qr-job-{name}"]
            assert (await client.exec("hostname")).stdout.strip() == f"ws-{name}"
            for other in names:
                if other != name:
                    with pytest.raises(PathEscapeError):
                        await client.read_file(f"../{other}/secret-{other}.txt")

        await clients[0].write_file("/shared/iso/handoff.txt", b"from a")
        assert await clients[1].read_file("/shared/iso/handoff.txt") == b"from a"
        await clients[2].copy("/shared/iso/handoff.txt", "received.txt")
        assert await clients[2].read_text("received.txt") == "from a"

        for client, job in zip(clients, jobs, strict=True):
            await client.kill_process(job.process_id)
            done = await poll_until(lambda c=client, j=job: c.poll_process(j.process_id),
                                    lambda out: out.process.status != "running")
            assert done.process.status == "killed"
    finally:
        await asyncio.gather(*(c.destroy(remove_volume=True) for c in clients))
