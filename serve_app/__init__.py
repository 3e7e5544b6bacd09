"""The Ray Serve ingress: the LangGraph API and /metrics (no control panel yet).

Top layer: may import actors, runs, sandbox and quadracode_ray; nothing imports it.
"""
