"""Starting and stopping the whole system on one machine (``quadracode-ray up/down/status``).

This package is core: it starts processes (Postgres, a Ray head) and applies a Serve
config by import path, exactly as ``serve deploy`` would, so it never imports the layers
above it.
"""
