"""Tools graphs offer to models: workspace tools and fleet/delegation tools.

Each tool is a ``Tool``: a name, a description, a pydantic model of its arguments (its JSON
schema is what the model sees) and an async function. Failures the model can act on
(bad arguments, a workspace or fleet refusal) come back as ``{"error": ...}`` results.
"""

from quadracode_ray.tools.base import Tool, ToolContext, ToolOutcome, invoke_tool
from quadracode_ray.tools.fleet_tools import fleet_tools
from quadracode_ray.tools.workspace_tools import workspace_tools

__all__ = ["Tool", "ToolContext", "ToolOutcome", "fleet_tools", "invoke_tool", "workspace_tools"]
