"""The scripted model: a deterministic offline brain behind real OpenAI/Anthropic wire protocols."""

from quadracode_ray.llm.scripted.brain import Decision, decide
from quadracode_ray.llm.scripted.runtime import ensure_scripted_server
from quadracode_ray.llm.scripted.server import FaultPlan, ScriptedServer, build_app

__all__ = ["Decision", "FaultPlan", "ScriptedServer", "build_app", "decide", "ensure_scripted_server"]
