"""The trivial graph of the API bench: one node that adds one. Both servers and the floor run it."""

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict


class CountState(TypedDict, total=False):
    n: int


def add_one(state: CountState) -> dict:
    return {"n": state.get("n", 0) + 1}


_builder = StateGraph(CountState)
_builder.add_node("add_one", add_one)
_builder.add_edge(START, "add_one")
_builder.add_edge("add_one", END)
graph = _builder.compile()
