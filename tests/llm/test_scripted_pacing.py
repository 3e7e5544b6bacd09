"""The scripted server's pause between the pieces of a streamed reply (off by default), which
lets a client see a reply arrive token by token as from a real model."""

from __future__ import annotations

import time

import httpx

from quadracode_ray.llm.scripted.server import ScriptedServer

BODY = {"model": "default", "stream": True,
        "messages": [{"role": "user", "content": "tell me about " + "slow streams " * 6}]}


def _arrivals(url: str) -> list[float]:
    times = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=BODY, timeout=30) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content": "' in line and '"content": ""' not in line:
                times.append(time.monotonic())
    return times


def test_streamed_pieces_come_with_the_configured_pause_between_them():
    paced = ScriptedServer(chunk_interval_s=0.1).start()
    try:
        times = _arrivals(paced.url)
        assert len(times) >= 4
        gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
        assert min(gaps) >= 0.08, gaps
        # Set at run time too, as the delay is.
        httpx.post(f"{paced.url}/_scripted/delay", json={"delay_s": 0, "chunk_interval_s": 0}).raise_for_status()
        times = _arrivals(paced.url)
        assert times[-1] - times[0] < 0.08 * (len(times) - 1)
    finally:
        paced.stop()
