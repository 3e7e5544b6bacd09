"""LangGraph graphs of Quadracode-Ray (no Ray imports: clients are injected).

- ``build_agent_graph``: ReAct over workspace tools, ends with a TaskResult-compatible result.
- ``build_orchestrator_graph``: answers, delegates without blocking, folds task results in.
- ``NamespacedSaver``: one checkpoint namespace per assistant over a shared saver.
- ``Guardrails`` / ``StopRegistry``: autonomous-mode limits and the emergency stop.
- ``ContextPolicy``: the prompt's token budget and tool-output bounds.
"""

from quadracode_ray.graphs.agent import AgentState, build_agent_graph
from quadracode_ray.graphs.checkpoint import NamespacedSaver, namespaced, task_thread_id
from quadracode_ray.graphs.context import ContextPolicy, fit_to_budget
from quadracode_ray.graphs.control import Guardrails, StopRegistry, StopSignal
from quadracode_ray.graphs.orchestrator import (
    TASK_RESULT_NAME,
    OrchestratorState,
    build_orchestrator_graph,
    format_task_result,
)

__all__ = [
    "TASK_RESULT_NAME", "AgentState", "ContextPolicy", "Guardrails", "NamespacedSaver", "OrchestratorState",
    "StopRegistry", "StopSignal", "build_agent_graph", "build_orchestrator_graph", "fit_to_budget",
    "format_task_result", "namespaced", "task_thread_id",
]
