"""The scripted model's decisions on neutral turns (pure logic, no HTTP)."""

from __future__ import annotations

import json

from quadracode_ray.llm.scripted.brain import decide

FLEET = {name: {} for name in ("list_agents", "spawn_agent", "delegate")}


def _after(turns, call, result):
    call_id = f"c{len(turns)}"
    return turns + [{"role": "assistant", "text": "", "tool_calls": [{"id": call_id, **call}]},
                    {"role": "tool", "tool_call_id": call_id, "text": json.dumps(result)}]


def test_delegation_lists_then_spawns_then_delegates():
    turns = [{"role": "user", "text": "delegate to a coder agent: write hello.py that prints 42 and run it"}]
    first = decide(turns, FLEET).tool_calls[0]
    assert first == {"name": "list_agents", "args": {"kind": "coder"}}
    turns = _after(turns, first, [])
    second = decide(turns, FLEET).tool_calls[0]
    assert second == {"name": "spawn_agent", "args": {"kind": "coder"}}
    turns = _after(turns, second, {"agent_id": "coder-1", "kind": "coder"})
    third = decide(turns, FLEET).tool_calls[0]
    assert third == {"name": "delegate", "args": {"instruction": "write hello.py that prints 42 and run it",
                                                  "agent_id": "coder-1"}}
    turns = _after(turns, third, {"task_id": "t-9", "agent_id": "coder-1", "status": "pending"})
    final = decide(turns, FLEET)
    assert final.tool_calls == [] and "t-9" in final.text


def test_delegation_reply_names_the_requested_agent_while_the_task_is_pending():
    turns = [{"role": "user", "text": "delegate to a coder agent: write notes.txt"}]
    turns = _after(turns, {"name": "list_agents", "args": {"kind": "coder"}}, [{"agent_id": "c7", "kind": "coder"}])
    delegate = decide(turns, FLEET).tool_calls[0]
    turns = _after(turns, delegate, {"task_id": "t-1", "agent_id": None, "status": "pending"})
    assert decide(turns, FLEET).text.startswith("Delegated to agent c7 as task t-1.")
    unassigned = _after(turns[:1], {"name": "delegate", "args": {"instruction": "write notes.txt"}},
                        {"task_id": "t-2", "agent_id": None, "status": "pending"})
    assert decide(unassigned, FLEET).text.startswith("Delegated to the next free agent as task t-2.")


def test_a_spawn_refused_at_the_cap_delegates_to_the_next_free_agent():
    turns = [{"role": "user", "text": "delegate to a coder agent: write notes.txt"}]
    turns = _after(turns, {"name": "list_agents", "args": {"kind": "coder"}}, [])
    turns = _after(turns, {"name": "spawn_agent", "args": {"kind": "coder"}},
                   {"error": "FleetCapacityError: agent cap reached: 4 live and 0 starting of at most 4"})
    delegate = decide(turns, FLEET).tool_calls[0]
    assert delegate == {"name": "delegate", "args": {"instruction": "write notes.txt"}}
    turns = _after(turns, delegate, {"task_id": "t-3", "agent_id": None, "status": "pending"})
    assert decide(turns, FLEET).text.startswith("Delegated to the next free agent as task t-3.")
    # a refused delegation itself still ends the turn with the error
    failed = _after(turns[:-2], delegate, {"error": "no agent available"})
    assert "delegate step failed" in decide(failed, FLEET).text


def test_delegation_reuses_a_healthy_agent_of_the_kind():
    turns = [{"role": "user", "text": "delegate to a tester agent: run the tests"}]
    turns = _after(turns, {"name": "list_agents", "args": {}},
                   [{"agent_id": "c1", "kind": "coder"}, {"agent_id": "t1", "kind": "tester", "healthy": True}])
    assert decide(turns, FLEET).tool_calls[0]["args"]["agent_id"] == "t1"


def test_failed_command_finishes_as_failed():
    tools = {"exec": {}, "finish": {}}
    turns = _after([{"role": "user", "text": "run `false`"}], {"name": "exec", "args": {"command": "false"}},
                   {"exit_code": 1, "stdout": "", "stderr": "boom"})
    call = decide(turns, tools).tool_calls[0]
    assert call == {"name": "finish", "args": {"output": "boom", "status": "failed"}}


def test_an_exec_the_workspace_refused_finishes_with_the_workspace_error():
    tools = {"exec": {}, "finish": {}}
    turns = _after([{"role": "user", "text": "run `ls`"}], {"name": "exec", "args": {"command": "ls"}},
                   {"error": "WorkspaceUnavailable: the executor did not answer"})
    call = decide(turns, tools).tool_calls[0]
    assert call == {"name": "finish", "args": {
        "output": "The exec step failed: WorkspaceUnavailable: the executor did not answer", "status": "failed"}}


def test_missing_tool_is_said_plainly():
    decision = decide([{"role": "user", "text": "list agents"}], {})
    assert decision.tool_calls == [] and "list_agents" in decision.text


def test_code_name_from_history_and_task_results():
    turns = [{"role": "user", "text": "Remember the code name BLUEBIRD."},
             {"role": "assistant", "text": "Noted."},
             {"role": "user", "text": "What is the code name?"}]
    assert "BLUEBIRD" in decide(turns, {}).text
    assert "not been told" in decide(turns[2:], {}).text
    folded = [{"role": "user", "text": "[task t1 succeeded by agent a1]\n42"}]
    assert decide(folded, {}).text == "Task t1 (agent a1) succeeded: 42"


def test_write_and_run_phrasings():
    tools = {"write_file": {}, "exec": {}}
    for text in ("write hello.py that prints 42 and run it", "Write hello.py that prints 42, then run it.",
                 "please write a file called hello.py that prints 42; run it"):
        decision = decide([{"role": "user", "text": text}], tools)
        assert decision.tool_calls == [{"name": "write_file", "args": {"path": "hello.py", "content": "print(42)\n"}}]
        turns = _after([{"role": "user", "text": text}], decision.tool_calls[0], {"path": "hello.py"})
        assert decide(turns, tools).tool_calls == [{"name": "exec", "args": {"command": "python3 hello.py"}}]
    only_write = decide([{"role": "user", "text": "write greet.py that prints hello world"}], tools)
    assert only_write.tool_calls[0]["args"]["content"] == 'print("hello world")\n'
