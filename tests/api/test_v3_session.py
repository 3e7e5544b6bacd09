"""The v3 protocol's wire events made from a thread's stored run events (pure logic)."""

from __future__ import annotations

import orjson
import pytest

from serve_app.runs.v3_session import CANCELLED, END_RESERVE, RUN_BLOCK, V3Session, parse_filter


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


SIMPLE_RUN = [("values", _protocol("values", {"items": ["x"]})), ("updates", _protocol("updates", {"add": {}})),
              ("values", _protocol("values", {"items": ["x", "a"]}))]


def _play_runs(session: V3Session, runs: list[tuple[int, list, str]]) -> list[dict]:
    """Runs (tape_ordinal, stored events, end status) one after another, as the tape reads them."""
    events: list[dict] = []
    for ordinal, stored, status in runs:
        run_id = f"r{ordinal}"
        events += session.start_run(run_id, "agent", ordinal)
        for k, (name, data) in enumerate(stored):
            events += session.ingest(name, data, f"{run_id}:{k}")
        events += session.end_run(status, {"items": ["x", "a"]}, False)
    return events


def _key(event: dict) -> tuple:
    """An event as a client tells it apart (its timestamp is the time it was made)."""
    return event["seq"], event["event_id"], event["method"], orjson.dumps(event["params"]["data"])


def _by_run(events: list[dict], run_id: str) -> list[tuple]:
    return [_key(e) for e in events if e["event_id"].startswith((f"{run_id}:", f"synth:{run_id}:"))]


def test_each_run_is_numbered_in_its_own_block_and_its_end_at_the_blocks_end() -> None:
    events = _play_runs(V3Session(), [(1, SIMPLE_RUN, "success"), (2, SIMPLE_RUN, "success")])
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))  # strictly growing
    first, second = events[:len(events) // 2], events[len(events) // 2:]
    assert [e["seq"] for e in first[:-1]] == list(range(RUN_BLOCK + 1, RUN_BLOCK + len(first)))
    assert first[-1]["params"]["data"]["event"] == "completed" and first[-1]["seq"] == 2 * RUN_BLOCK - END_RESERVE + 1
    assert second[0]["seq"] == 2 * RUN_BLOCK + 1 and second[-1]["seq"] == 3 * RUN_BLOCK - END_RESERVE + 1
    assert seqs[-1] < 2**53  # exact for a JavaScript client


def test_a_deleted_run_changes_no_other_runs_numbers() -> None:
    """A rollback deletes its run and the run's events: a reader that replays the thread after it
    numbers the later runs as the reader that saw the deleted run live did, so a client resuming
    with ``since`` misses nothing."""
    live = _play_runs(V3Session(), [(1, SIMPLE_RUN, "success"), (2, SIMPLE_RUN[:1], "interrupted"),
                                    (3, SIMPLE_RUN, "success"), (4, SIMPLE_RUN, "success")])
    replayed = _play_runs(V3Session(), [(1, SIMPLE_RUN, "success"), (3, SIMPLE_RUN, "success"),
                                        (4, SIMPLE_RUN, "success")])
    for run_id in ("r1", "r3", "r4"):
        assert _by_run(live, run_id) == _by_run(replayed, run_id)
    since = _by_run(live, "r3")[-1][0]
    assert [_key(e) for e in replayed if e["seq"] > since] == [_key(e) for e in live if e["seq"] > since] != []


def test_a_run_replayed_without_its_events_still_sends_its_end_after_any_cursor_inside_it() -> None:
    """A run that was not stored (not resumable) replays only its start and end once its host
    forgot its events: a client that left in its middle still gets its end, at the same seq."""
    live = _play_runs(V3Session(), [(1, SIMPLE_RUN, "error"), (2, SIMPLE_RUN, "success")])
    forgotten = _play_runs(V3Session(), [(1, [], "error"), (2, SIMPLE_RUN, "success")])
    since = _by_run(live, "r1")[1][0]  # the client saw the run's start and its first event
    resent = [_key(e) for e in forgotten if e["seq"] > since]
    assert resent == [_key(e) for e in live if e["seq"] > since][len(SIMPLE_RUN) - 1:]
    assert orjson.loads(resent[0][3])["event"] == "failed"


def test_an_interrupt_is_numbered_at_its_runs_end() -> None:
    session = V3Session()
    events = session.start_run("r5", "agent", 5)
    for k, (name, data) in enumerate(TAPE):
        events += session.ingest(name, data, f"r5:{k}")
    events += session.end_run("success", {"__interrupt__": [{"id": "i1"}]}, True)
    requested = next(e for e in events if e["method"] == "input.requested")
    assert requested["seq"] == 6 * RUN_BLOCK - END_RESERVE + 1
    assert [e["seq"] for e in events] == sorted({e["seq"] for e in events})


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
