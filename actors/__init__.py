"""The actor fabric: event bus, registry, fleet manager, orchestrator and agent actors.

Start everything with ``actors.bootstrap.ensure_system(settings)``; talk to it with
``actors.client.FabricClient``. Layering: this package may import ``sandbox`` and
``quadracode_ray``, never ``serve_app``.
"""
