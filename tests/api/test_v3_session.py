"""The v3 protocol's wire events made from a thread's stored run events (pure logic)."""

from __future__ import annotations

import orjson
import pytest

from serve_app.runs.v3_session import CANCELLED, V3Session, parse_filter


def _protocol(method: str, data, namespace=(), **params) -> bytes:
    return orjson.dumps({"type": "event", "method": method,
                         "params": {"namespace": list(namespace), "timestamp": 1, "data": data, **params}})


TAPE = [
    ("values", _protocol("values", {"items": []}, interrupts=[])),
    ("custom", _protocol("custom", {"name": "progress", "step": "a"})),
    ("messages", _protocol("messages", {"event": "message-start", "role": "ai", "id": "m1"})),
    ("lifecycle", _protocol("lifecycle", {"event": "started", "namespace": ["tools:1"], "graph_name": "researcher"})),
    ("messages|tools:1", _protocol("messages", {"event": "message-start", "role": "ai", "id": "m2"}, ["tools:1"])),
    ("updates", _protocol("updates", {"__interrupt__": [{"id": "i1", "value": "ok?"}]})),
]


def _play(session: V3Session, run_id: str = "r1", status: str = "success") -> list[dict]:
    events = session.start_run(run_id, "agent")
    for k, (name, data) in enumerate(TAPE):
        events += session.ingest(name, data, f"{run_id}:{k}")
    return events + session.end_run(status, {"__interrupt__": [{"id": "i1"}]}, True)


def test_a_tape_becomes_numbered_wire_events_with_lifecycle_and_interrupts() -> None:
    events = _play(V3Session())
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    methods = [(e["method"], e["params"]["namespace"], (e["params"]["data"] or {}).get("event")) for e in events]
    assert methods[0] == ("lifecycle", [], "running")
    assert ("lifecycle", ["tools:1"], "started") in methods
    assert ("messages", ["tools:1"], "message-start") in methods
    requested = [e for e in events if e["method"] == "input.requested"]
    assert [r["params"]["data"] for r in requested] == [{"interrupt_id": "i1", "payload": "ok?"}]
    # The interrupt ends the run's root as interrupted, once: the run's end adds no terminal event.
    assert [m for m in methods if m[0] == "lifecycle" and m[1] == []] == [
        ("lifecycle", [], "running"), ("lifecycle", [], "interrupted")]
    assert not any(e["method"] == "updates" for e in events)  # the interrupt is not an update


def test_an_interrupt_and_what_follows_it_go_out_at_the_runs_end_in_order() -> None:
    """The SDK reads the thread's state when it sees input.requested: nothing of it leaves before
    the run's end, when its checkpoints and row are committed (the suite's update_state test read
    the state of the step before otherwise)."""
    session = V3Session()
    sent = session.start_run("r1", "agent")
    for k, (name, data) in enumerate(TAPE):
        sent += session.ingest(name, data, f"r1:{k}")
    after = session.ingest("values", _protocol("values", {"items": ["late"]}), "r1:99")
    assert after == [] and not any(e["method"] == "input.requested" for e in sent)
    end = session.end_run("success", {"__interrupt__": [{"id": "i1"}]}, True)
    assert [e["method"] for e in end] == ["input.requested", "lifecycle", "values"]
    assert [e["seq"] for e in sent + end] == list(range(1, len(sent) + len(end) + 1))


def test_the_same_tape_gives_the_same_seq_and_event_ids() -> None:
    first, second = _play(V3Session()), _play(V3Session())
    assert [(e["seq"], e["event_id"], e["method"]) for e in first] == \
        [(e["seq"], e["event_id"], e["method"]) for e in second]
    assert len({e["event_id"] for e in first}) == len(first)


def test_a_cancelled_run_fails_with_the_reason_and_closes_its_subgraphs() -> None:
    session = V3Session()
    session.start_run("r1", "agent")
    session.ingest("lifecycle", TAPE[3][1], "r1:0")
    end = session.end_run("interrupted", None, False)
    assert [(e["params"]["namespace"], e["params"]["data"]["event"]) for e in end] == [
        (["tools:1"], "completed"), ([], "failed")]
    assert end[-1]["params"]["data"]["error"] == CANCELLED


def test_filters_by_channel_custom_name_namespace_and_depth() -> None:
    events = _play(V3Session())
    progress = parse_filter({"channels": ["custom:progress"]})
    assert [e["params"]["data"]["step"] for e in events if progress.matches(e)] == ["a"]
    root_messages = parse_filter({"channels": ["messages"], "namespaces": [[]], "depth": 0})
    assert [e["params"]["data"]["id"] for e in events if root_messages.matches(e)] == ["m1"]
    tools = parse_filter({"channels": ["messages"], "namespaces": [["tools"]]})
    assert [e["params"]["data"]["id"] for e in events if tools.matches(e)] == ["m2"]
    inputs = parse_filter({"channels": ["input"]})
    assert [e["method"] for e in events if inputs.matches(e)] == ["input.requested"]


@pytest.mark.parametrize("body", [{}, {"channels": []}, {"channels": ["nope"]}, ["values"]])
def test_a_bad_filter_is_refused_with_a_reason(body) -> None:
    with pytest.raises(ValueError):
        parse_filter(body)


async def test_a_shared_tape_gives_a_late_follower_the_history_then_the_live_events() -> None:
    import asyncio

    from serve_app.runs.v3_tape import _SharedTape

    release = asyncio.Event()

    async def source():
        yield [{"seq": 1}, {"seq": 2}]
        await release.wait()
        yield [{"seq": 3}]

    tape = _SharedTape(source(), V3Session())
    early = tape.follow()
    assert [e["seq"] for e in await anext(early)] == [1, 2]
    late = tape.follow()
    assert [e["seq"] for e in await anext(late)] == [1, 2]  # from memory, no second read
    release.set()
    assert [e["seq"] for e in await anext(early)] == [3]
    assert [e["seq"] for e in await anext(late)] == [3]
    tape.task.cancel()
