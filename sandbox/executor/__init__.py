"""The in-container executor (stdlib only; shipped into each workspace, see sandbox.executor_bundle)."""
