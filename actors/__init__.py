"""The actor fabric: event bus, registry, fleet manager, orchestrator and agent actors.

Start everything with ``actors.bootstrap.ensure_system(settings)``; talk to it with
``actors.client.FabricClient``. The actors that host runs embed the run engine of ``runs``.
Layering: this package may import ``runs``, ``sandbox`` and ``quadracode_ray``, never ``serve_app``.
"""
