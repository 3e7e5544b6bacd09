"""LangSmith tracing passes through: with its usual environment set, a graph's runs and model
calls reach the LangSmith endpoint. The endpoint is a recorder this test starts on loopback;
the graph runs in a child process so the variables are set before LangChain reads them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCRIPT = """
import asyncio
from langchain_core.tracers.langchain import wait_for_all_tracers
from langgraph.checkpoint.memory import InMemorySaver
from quadracode_ray.config import Settings
from quadracode_ray.graphs import build_orchestrator_graph
from quadracode_ray.llm import make_chat_model
from quadracode_ray.testing import FakeDelegation, FakeFleet, FakeWorkspace

async def main():
    settings = Settings(_env_file=None, scripted_server_url={url!r}, data_dir={data!r})
    fleet = FakeFleet()
    graph = build_orchestrator_graph(model=make_chat_model("scripted:ls-probe", settings), workspace=FakeWorkspace(),
                                     fleet=fleet, delegation=FakeDelegation(fleet), checkpointer=InMemorySaver())
    out = await graph.ainvoke({{"messages": [{{"role": "user", "content": "remember the code name LARK"}}]}},
                              {{"configurable": {{"thread_id": "ls"}}}})
    print(out["messages"][-1].content)

asyncio.run(main())
wait_for_all_tracers()
"""


class _Recorder(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.received.append((self.path, self.rfile.read(length) if length else b""))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = _answer

    def log_message(self, *args) -> None:
        pass


def test_langsmith_environment_traces_the_graphs_runs_and_model_calls(graph_llm_server, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "LANGSMITH_TRACING": "true", "LANGSMITH_API_KEY": "lsv2-test-key",
               "LANGSMITH_ENDPOINT": f"http://127.0.0.1:{server.server_port}", "LANGSMITH_PROJECT": "qr-test",
               "LANGSMITH_DISABLE_RUN_COMPRESSION": "true"}
        script = SCRIPT.format(url=graph_llm_server.url, data=str(tmp_path))
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip().endswith("Noted: the code name is LARK.")
    finally:
        server.shutdown()
    posted = b"".join(body for path, body in _Recorder.received if path.startswith("/runs"))
    assert b"orchestrator" in posted  # the graph's run
    assert b":ls-probe" in posted  # the model call, named provider:model
    assert b"LARK" in posted
