"""The Gradio control panel, mounted at ``/ui`` on the Serve ingress (or run standalone with
``quadracode-ray panel --url URL``).

It is a pure client of the HTTP API: the LangGraph API through ``langgraph-sdk`` for chat and
threads, the operator API (fleet, events, workspaces, control) through ``httpx`` for the rest.
Nothing here imports Ray, the actors or the sandbox (tests/foundation/test_layering.py checks).

- ``client``: the HTTP calls, every failure turned into a readable ``PanelError``.
- ``chat_logic``, ``views``, ``metrics_logic``: pure formatting and filtering (unit-tested).
- ``ui_*``: the Gradio layout of each tab; ``app``: the Blocks app and its mounting.
"""
