"""The Ray Serve ingress: the LangGraph API, the control panel at /ui, and /metrics.

Top layer: may import actors, runs, sandbox and quadracode_ray; nothing imports it.
"""
