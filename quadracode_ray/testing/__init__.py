"""Test doubles shipped with the library: in-memory workspace, fleet and delegation.

They implement the interfaces in ``quadracode_ray.interfaces`` faithfully enough for unit
tests of graphs, tools and API code; the real implementations live in the sandbox and actor
layers. ``FakeWorkspace`` runs the base workspace conformance set
(``sandbox.testing.conformance.WorkspaceClientConformance``) as the real sandboxes do.
"""

from quadracode_ray.testing.fakes import FakeDelegation, FakeFleet, FakeWorkspace, fake_workspace

__all__ = ["FakeDelegation", "FakeFleet", "FakeWorkspace", "fake_workspace"]
