"""The scripted model's decision logic: deterministic, offline, and useful enough for demos.

It reads the conversation (provider-neutral turns), finds the latest instruction from the
user, looks at the tool calls already made for it, and either calls the next tool of a small
plan or answers. Plain instructions it follows (case-insensitive, anywhere in the message):

- ``write hello.py that prints 42 [and run it]`` -> write_file, exec, then finish/answer
- ``write notes.txt with content hello``          -> write_file
- ``run `ls -la` `` / ``run the command: ls``      -> exec
- ``keep running `cmd` `` (loops until stopped: for guardrail demos)
- ``read notes.txt`` / ``list files`` / ``take a snapshot``
- ``list agents`` / ``spawn a coder agent`` / ``kill agent a1`` / ``check task t1`` / ``cancel task t1``
- ``delegate to a coder agent: <task>``            -> list_agents, spawn_agent if none, delegate
- ``ask me <question>``                             -> ask_human (the graph interrupts)
- ``call tool <name> with {"json": "args"}``        -> that tool (an MCP server's ``server__tool``, say)
- ``remember the code name X`` / ``what is the code name?`` (answered from the history)
- a folded task result (``[task t1 succeeded by agent a1] ...``) -> reports it

When a ``finish`` tool is offered (agent graphs) the last step is ``finish(output=...)``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

TASK_RESULT_PATTERN = re.compile(r"^\[task (\S+) (\w+)(?: by agent (\S+))?\]\s*(.*)$", re.S)


@dataclass
class Decision:
    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"name", "args"}


REPEAT = "__repeat__"
"""A last step meaning: repeat the step before it forever."""


@dataclass
class _Step:
    tool: str
    args: dict[str, Any]


def _latest_instruction(turns: list[dict[str, Any]]) -> tuple[int, str]:
    for index in range(len(turns) - 1, -1, -1):
        if turns[index]["role"] == "user":
            return index, turns[index].get("text", "")
    return -1, ""


def _results_since(turns: list[dict[str, Any]], start: int) -> list[tuple[dict[str, Any], str]]:
    """(tool call, result text) pairs made after the instruction, in order."""
    calls: dict[str, dict[str, Any]] = {}
    done: list[tuple[dict[str, Any], str]] = []
    for turn in turns[start + 1:]:
        for call in turn.get("tool_calls") or []:
            calls[call["id"]] = call
        if turn["role"] == "tool" and turn.get("tool_call_id") in calls:
            done.append((calls[turn["tool_call_id"]], turn.get("text", "")))
    return done


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _print_source(path: str, value: str) -> str:
    value = value.strip().strip("'\"")
    literal = value if re.fullmatch(r"-?\d+(\.\d+)?", value) else json.dumps(value)
    if path.endswith(".sh"):
        return f"#!/usr/bin/env bash\necho {value}\n"
    return f"print({literal})\n"


def _runner(path: str) -> str:
    return f"bash {path}" if path.endswith(".sh") else f"python3 {path}"


def _plan(text: str) -> list[_Step] | None:
    """The static steps for an instruction; None when it is not a tool instruction."""
    low = text.lower()
    if m := re.search(r"delegate(?: to an? ([\w-]+) agent)?\s*:\s*(.+)", text, re.I | re.S):
        return [_Step("delegate", {"instruction": m.group(2).strip(), "kind": (m.group(1) or "coder").lower()})]
    if m := re.search(r"\bcall (?:the )?tool `?([\w-]+)`?(?: with (\{.*\}))?", text, re.I | re.S):
        args = _json(m.group(2) or "{}")
        return [_Step(m.group(1), args if isinstance(args, dict) else {})]
    if m := re.search(r"write (?:a file )?(?:called |named )?([\w./-]+\.\w+) that prints (.+?)"
                      r"(?=\s*(?:,|;|\band\b|\bthen\b|[.!]?\s*$))", text, re.I | re.M):
        path, value = m.group(1), m.group(2)
        steps = [_Step("write_file", {"path": path, "content": _print_source(path, value)})]
        if re.search(r"\brun it\b", low):
            steps.append(_Step("exec", {"command": _runner(path)}))
        return steps
    if m := re.search(r"write (?:a file )?([\w./-]+) with (?:the )?contents? (.+)", text, re.I | re.S):
        return [_Step("write_file", {"path": m.group(1), "content": m.group(2).strip()})]
    if m := re.search(r"keep running `([^`]+)`", text, re.I):
        return [_Step("exec", {"command": m.group(1)}), _Step(REPEAT, {})]  # until a guardrail or a stop
    if m := re.search(r"\brun (?:the command\s*:?\s*)?`([^`]+)`", text, re.I) or \
            re.search(r"\brun the command\s*:\s*(.+)$", text, re.I | re.M):
        return [_Step("exec", {"command": m.group(1).strip()})]
    if m := re.search(r"\bread (?:the file )?([\w./-]+\.\w+)", text, re.I):
        return [_Step("read_file", {"path": m.group(1)})]
    if re.search(r"\blist (?:the )?files\b", low):
        return [_Step("list_files", {"path": "."})]
    if re.search(r"\b(take a )?snapshot\b", low):
        return [_Step("snapshot", {"label": "scripted"})]
    if re.search(r"\blist (?:the )?agents\b", low):
        return [_Step("list_agents", {})]
    if m := re.search(r"\bspawn an? ([\w-]+) agent\b", low):
        return [_Step("spawn_agent", {"kind": m.group(1)})]
    if m := re.search(r"\bkill agent (\S+?)[.!]?$", text, re.I | re.M):
        return [_Step("kill_agent", {"agent_id": m.group(1)})]
    if m := re.search(r"\bcheck task (\S+?)[.!?]?$", text, re.I | re.M):
        return [_Step("check_task", {"task_id": m.group(1)})]
    if m := re.search(r"\bcancel task (\S+?)[.!]?$", text, re.I | re.M):
        return [_Step("cancel_task", {"task_id": m.group(1)})]
    if m := re.search(r"\bask me (.+)", text, re.I | re.S):
        return [_Step("ask_human", {"question": m.group(1).strip()})]
    return None


def _code_name(turns: list[dict[str, Any]]) -> str | None:
    found = None
    for turn in turns:
        if turn["role"] in ("user", "system"):
            for m in re.finditer(r"code ?name (?:is |was )?[\"'`]?([A-Za-z0-9_-]+)", turn.get("text", ""), re.I):
                if m.group(1).lower() not in ("is", "was"):
                    found = m.group(1)
    return found


def _answer(text: str, turns: list[dict[str, Any]]) -> str:
    if m := TASK_RESULT_PATTERN.match(text.strip()):
        task_id, status, agent, body = m.groups()
        by = f" (agent {agent})" if agent else ""
        return f"Task {task_id}{by} {status}: {body.strip() or '(no output)'}"
    if re.search(r"\bremember\b.*\bcode ?name\b", text, re.I):
        name = _code_name([{"role": "user", "text": text}])
        return f"Noted: the code name is {name}." if name else "Which code name should I remember?"
    if re.search(r"\bcode ?name\b.*\?|\bwhat(?:'s| is) the code ?name\b", text, re.I):
        name = _code_name(turns[:-1])
        return f"The code name is {name}." if name else "I have not been told a code name."
    if not text.strip():
        return "Hello. Tell me what to do."
    return f"Scripted model reply to: {text.strip()[:200]}"


def _finish_output(done: list[tuple[dict[str, Any], str]]) -> tuple[str, str]:
    """(output, status) for the finish step, from the last tool result."""
    call, result = done[-1]
    data = _json(result)
    if call["name"] == "exec" and isinstance(data, dict) and not data.get("error"):
        ok = data.get("exit_code") == 0
        out = (data.get("stdout") or "").strip() if ok else (data.get("stderr") or data.get("stdout") or "").strip()
        return out, "succeeded" if ok else "failed"
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"]), "failed"
    return result.strip()[:2000], "succeeded"


def _delegate_next(step: _Step, done: list[tuple[dict[str, Any], str]], tools: set[str]) -> dict | None:
    """list_agents -> spawn_agent (if none of that kind) -> delegate; None when delegated."""
    kind = step.args["kind"]
    names = [call["name"] for call, _ in done]
    if "delegate" in names:
        return None
    agent_id = None
    for call, result in done:
        data = _json(result)
        if call["name"] == "list_agents" and isinstance(data, list):
            agent_id = next((a["agent_id"] for a in data if a.get("kind") == kind and a.get("healthy", True)), None)
        if call["name"] == "spawn_agent" and isinstance(data, dict) and data.get("agent_id"):
            agent_id = data["agent_id"]
    if agent_id is None and "list_agents" not in names and "list_agents" in tools:
        return {"name": "list_agents", "args": {"kind": kind}}
    if agent_id is None and "spawn_agent" not in names and "spawn_agent" in tools:
        return {"name": "spawn_agent", "args": {"kind": kind}}
    args = {"instruction": step.args["instruction"]}
    if agent_id:
        args["agent_id"] = agent_id
    return {"name": "delegate", "args": args}


def decide(turns: list[dict[str, Any]], tools: dict[str, Any]) -> Decision:
    """The next assistant turn for a conversation, given the tools offered (name -> schema)."""
    start, instruction = _latest_instruction(turns)
    done = _results_since(turns, start)
    offered = set(tools)
    steps = _plan(instruction) if not TASK_RESULT_PATTERN.match(instruction.strip()) else None
    if steps is None:
        return _finish_or_answer(_answer(instruction, turns[: start + 1]), "succeeded", offered)
    # A spawn refused (at the fleet's cap, say) is no reason to give up: the delegation goes to the
    # next free agent, which the dispatcher finds or queues the task behind.
    spawn_refused = bool(done) and done[-1][0]["name"] == "spawn_agent" and steps is not None \
        and steps[0].tool == "delegate"
    if done and not spawn_refused and _json(done[-1][1]) is not None and isinstance(_json(done[-1][1]), dict) \
            and _json(done[-1][1]).get("error"):
        output, status = _finish_output(done)
        return _finish_or_answer(f"The {done[-1][0]['name']} step failed: {output}", status, offered)
    if steps[0].tool == "delegate":
        call = _delegate_next(steps[0], done, offered)
        if call is None:
            data = _json(done[-1][1]) or {}
            # A pending task may not name its agent yet: the one the delegate call asked for does.
            agent = data.get("agent_id") or (done[-1][0].get("args") or {}).get("agent_id")
            whom = f"to agent {agent}" if agent else "to the next free agent"
            return _finish_or_answer(
                f"Delegated {whom} as task {data.get('task_id')}. "
                "I will report the result when it arrives.", "succeeded", offered)
        return _call(call, offered)
    if steps[-1].tool == REPEAT:
        return _call({"name": steps[-2].tool, "args": steps[-2].args}, offered)
    if len(done) < len(steps):
        step = steps[len(done)]
        return _call({"name": step.tool, "args": step.args}, offered)
    output, status = _finish_output(done)
    return _finish_or_answer(output, status, offered)


def _call(call: dict[str, Any], offered: set[str]) -> Decision:
    if call["name"] not in offered:
        return Decision(text=f"I cannot do that here: the tool {call['name']!r} is not available.")
    return Decision(tool_calls=[call])


def _finish_or_answer(text: str, status: str, offered: set[str]) -> Decision:
    if "finish" in offered:
        return Decision(tool_calls=[{"name": "finish", "args": {"output": text, "status": status}}])
    return Decision(text=text)
