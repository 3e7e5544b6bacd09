"""The in-container server (stdlib only; shipped into each workspace, see sandbox.server_bundle)."""
