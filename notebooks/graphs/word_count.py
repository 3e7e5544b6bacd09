"""The graph of 03_your_own_graph: count the words of a text, ask a human to approve, report.

Registered by ``langgraph.json`` beside it (start the system with
``QUADRACODE_GRAPHS_FILE=notebooks/graphs/langgraph.json``). ``graph`` is a ``StateGraph``: the
server compiles it with its own Postgres checkpointer, so every step is a checkpoint a client
can read, fork and replay.
"""

from typing import TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class State(TypedDict, total=False):
    text: str
    words: int
    approved: bool
    report: str


def count(state: State) -> State:
    return {"words": len(state["text"].split())}


def review(state: State) -> State:
    # Stops the run here; the client resumes it with Command(resume=<the human's answer>).
    answer = interrupt({"question": f"The text has {state['words']} words. Approve?"})
    return {"approved": answer == "yes"}


def report(state: State) -> State:
    verdict = "approved" if state["approved"] else "rejected"
    return {"report": f"{state['words']} words, {verdict}"}


graph = StateGraph(State)
graph.add_node("count", count)
graph.add_node("review", review)
graph.add_node("report", report)
graph.add_edge(START, "count")
graph.add_edge("count", "review")
graph.add_edge("review", "report")
graph.add_edge("report", END)
