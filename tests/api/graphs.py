"""Small graphs the API tests register through the ``graphs`` setting."""

from __future__ import annotations

import asyncio
import operator
import os
import time
from typing import Annotated

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from typing_extensions import TypedDict


class EchoState(TypedDict, total=False):
    items: Annotated[list, operator.add]
    fail: bool
    ask: bool
    answer: str
    sleep: float
    hold: str  # a test's gate (tests/api/run_gate.py): the step waits until this file exists


HOLD_LIMIT_S = 120.0  # a gate never released fails the run instead of holding its host forever


async def _until_released(path: str) -> None:
    # The run executes in another process (a run host actor): a file is the gate both can see.
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test's gate {path} was not released within {HOLD_LIMIT_S} s")
        await asyncio.sleep(0.02)


async def step(state: EchoState) -> dict:
    get_stream_writer()({"custom": "hi"})
    if state.get("hold"):
        await _until_released(state["hold"])
    if state.get("sleep"):
        await asyncio.sleep(state["sleep"])
    if state.get("fail"):
        raise ValueError("boom")
    return {"items": ["a"]}


def asker(state: EchoState) -> dict:
    if state.get("ask"):
        answer = interrupt({"question": "ok?"})
        return {"answer": answer, "items": ["asked"], "ask": False}
    return {}


def _echo_builder() -> StateGraph:
    builder = StateGraph(EchoState)
    builder.add_node("step", step)
    builder.add_node("asker", asker)
    builder.add_edge(START, "step")
    builder.add_edge("step", "asker")
    builder.add_edge("asker", END)
    return builder


echo = _echo_builder().compile()


class ChatState(TypedDict):
    messages: Annotated[list, add_messages]


async def chat_node(state: ChatState) -> dict:
    model = GenericFakeChatModel(messages=iter([AIMessage(content="hello there friend", id="ai-1")]))
    reply = await model.ainvoke(state["messages"])
    return {"messages": [reply]}


def whole_node(state: ChatState) -> dict:
    """A node returning a whole message (no model streaming it)."""
    return {"messages": [AIMessage(content="a whole reply", id="ai-whole")]}


whole_builder = StateGraph(ChatState)
whole_builder.add_node("whole", whole_node)
whole_builder.add_edge(START, "whole")
whole = whole_builder.compile()

chat_builder = StateGraph(ChatState)
chat_builder.add_node("chat", chat_node)
chat_builder.add_edge(START, "chat")
chat = chat_builder.compile()


class ParentState(TypedDict, total=False):
    items: Annotated[list, operator.add]


def _inner() -> object:
    builder = StateGraph(ParentState)
    builder.add_node("inner_step", lambda state: {"items": ["inner"]})
    builder.add_edge(START, "inner_step")
    return builder.compile()


parent_builder = StateGraph(ParentState)
parent_builder.add_node("child", _inner())
parent_builder.add_edge(START, "child")
nested = parent_builder.compile()


def factory(config: dict) -> StateGraph:
    """A graph built per run from its configuration: it appends the configured word."""
    word = (config.get("configurable") or {}).get("word", "default")

    builder = StateGraph(ParentState)
    builder.add_node("say", lambda state: {"items": [word]})
    builder.add_edge(START, "say")
    return builder


def first(state: ParentState) -> dict:
    return {"items": ["first"]}


async def patient(state: ParentState, config: RunnableConfig) -> dict:
    """Hangs on a run's first attempt (so a test can kill its executor), finishes on the next."""
    attempt = config["metadata"].get("run_attempt", 1)
    if attempt == 1:
        await asyncio.Event().wait()
    return {"items": [f"attempt-{attempt}"]}


durable_builder = StateGraph(ParentState)
durable_builder.add_node("first", first)
durable_builder.add_node("patient", patient)
durable_builder.add_edge(START, "first")
durable_builder.add_edge("first", "patient")
durable = durable_builder.compile()


TEST_GRAPHS = {
    "durable": "tests.api.graphs:durable",
    "echo": "tests.api.graphs:echo",
    "chat": "tests.api.graphs:chat",
    "whole": "tests.api.graphs:whole",
    "nested": "tests.api.graphs:nested",
    "factory": "tests.api.graphs:factory",
}
