"""The control panel's pure logic, without a browser or a server: chat rendering of messages and
stream parts, interrupts, event filtering, tables, file views, metrics sampling, URLs, errors."""

from __future__ import annotations

import httpx
import pytest

from serve_app.panel import chat_logic, metrics_logic, views
from serve_app.panel.client import PanelError, readable
from serve_app.panel.ui_common import api_url_from_page

THREAD = [
    {"type": "human", "id": "h1", "content": "list agents"},
    {"type": "ai", "id": "a1", "content": "", "tool_calls": [{"id": "c1", "name": "list_agents", "args": {}}]},
    {"type": "tool", "id": "t1", "tool_call_id": "c1", "name": "list_agents", "content": "[]", "status": "success"},
    {"type": "ai", "id": "a2", "content": [{"type": "text", "text": "No agents."}]},
]


def test_tool_calls_become_collapsible_steps_done_once_their_result_is_in():
    chat = chat_logic.to_chat(THREAD)
    assert [m["role"] for m in chat] == ["user", "assistant", "assistant"]
    step = chat[1]
    assert step["metadata"]["title"] == "tool list_agents" and step["metadata"]["status"] == "done"
    assert "→ result" in step["content"] and "[]" in step["content"]
    assert chat[2]["content"] == "No agents."
    pending = chat_logic.to_chat(THREAD[:2])
    assert pending[1]["metadata"]["status"] == "pending"


def test_a_pending_step_stops_spinning_once_its_run_ended_in_any_status():
    pending = chat_logic.to_chat(THREAD[:2])
    for status in ("pending", "running", None):
        assert chat_logic.settle_steps(pending, status) == pending
    for status, why in (("interrupted", "cancelled"), ("error", "failed"), ("timeout", "timed out"),
                        ("success", "no result")):
        settled = chat_logic.settle_steps(pending, status)
        assert settled[1]["metadata"] == {"title": f"tool list_agents ({why})", "id": "c1", "status": "done"}
        assert settled[0] == pending[0] and pending[1]["metadata"]["status"] == "pending"  # a copy
    done = chat_logic.to_chat(THREAD)
    assert chat_logic.settle_steps(done, "interrupted") == done  # finished steps keep their title


def test_a_failed_tool_and_a_folded_task_result_are_labelled():
    failed = [THREAD[1], {**THREAD[2], "status": "error", "content": "{\"error\": \"no\"}"}]
    assert chat_logic.to_chat(failed)[0]["metadata"]["title"].endswith("(error)")
    folded = chat_logic.to_chat([{"type": "tool", "tool_call_id": "other", "name": "task_result", "content": "42"}])
    assert folded == [{"role": "assistant", "content": "42", "metadata": {"title": "result: task_result", "status": "done"}}]


def test_an_agents_task_result_is_shown_as_the_agents_never_as_the_humans():
    from quadracode_ray.graphs import format_task_result
    from quadracode_ray.interfaces.fleet import TaskResult

    text = format_task_result(TaskResult(task_id="t-7", agent_id="coder-1a2b", status="succeeded", output="42\n"))
    folded = {"type": "human", "id": "r", "name": "task_result", "content": text}
    typed = {"type": "human", "id": "h", "content": text}  # the same words typed by the human
    shown = chat_logic.to_chat([folded, typed])
    assert shown[0] == {"role": "assistant", "content": "42",
                        "metadata": {"title": "agent coder-1a2b · task t-7 · succeeded"}}
    assert shown[1] == {"role": "user", "content": text}
    failed = format_task_result(TaskResult(task_id="t-8", agent_id=None, status="failed", error="boom"))
    assert chat_logic.to_chat([{**folded, "content": failed}])[0] == {
        "role": "assistant", "content": "(no output)\nerror: boom",
        "metadata": {"title": "agent unknown · task t-8 · failed"}}
    odd = chat_logic.to_chat([{**folded, "content": "no header"}])[0]
    assert odd["role"] == "assistant" and odd["metadata"]["title"] == "agent result"
    # While a run streams, the folded result is the state's, not a pending human turn.
    view = chat_logic.ChatStream()
    view.set_values({"messages": [folded]})
    assert [m["role"] for m in view.render()] == ["assistant"]


def test_tokens_stream_into_one_message_until_the_state_replaces_them():
    view = chat_logic.ChatStream()
    view.start("hi")
    assert view.render() == [{"role": "user", "content": "hi"}]
    assert view.feed("messages", [{"type": "AIMessageChunk", "id": "m", "content": "Hel"}, {}])
    assert view.feed("messages", [{"type": "AIMessageChunk", "id": "m", "content": "lo"}, {}])
    assert not view.feed("messages", [{"type": "tool", "id": "x", "content": "ignored"}, {}])
    assert view.render()[-1] == {"role": "assistant", "content": "Hello"}
    view.feed("values", {"messages": [{"type": "human", "id": "h", "content": "hi"},
                                      {"type": "ai", "id": "m", "content": "Hello"}]})
    assert view.render() == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"}]
    assert not view.feed("messages", [{"type": "AIMessageChunk", "id": "m", "content": "!"}, {}])


def test_interrupts_are_found_and_answered_by_kind():
    question = {"type": "question", "question": "which file?"}
    assert chat_logic.pending_interrupts({"interrupts": [{"value": question, "id": "i"}]}) == [question]
    assert chat_logic.pending_interrupts({"tasks": [{"interrupts": [{"value": "plain"}]}]}) == [
        {"type": "question", "question": "plain"}]
    assert chat_logic.pending_interrupts({"tasks": []}) == []
    halt = {"type": "guardrail", "reason": "too many", "options": ["continue", "stop"]}
    assert "which file?" in chat_logic.describe_interrupt(question)
    assert "too many" in chat_logic.describe_interrupt(halt) and "continue, stop" in chat_logic.describe_interrupt(halt)
    assert chat_logic.accept_value(question) == "yes" and chat_logic.accept_value(halt) == "continue"
    assert chat_logic.respond_value(question, "a.py") == "a.py"
    assert chat_logic.respond_value(halt, "try less") == {"action": "continue", "message": "try less"}
    assert chat_logic.edit_value('{"action": "stop"}') == {"action": "stop"}
    assert chat_logic.edit_value("not json") == "not json"


def test_a_join_streams_metadata_parts_say_when_a_run_starts_and_ends():
    assert chat_logic.run_lifecycle("metadata", {"run_id": "r1", "attempt": 1}) == "started"
    assert chat_logic.run_lifecycle("metadata", {"status": "run_done", "run_id": "r1"}) == "ended"
    assert chat_logic.run_lifecycle("values", {"run_id": "r1"}) is None
    assert chat_logic.run_lifecycle("metadata", "r1") is None
    assert chat_logic.run_lifecycle("metadata", {"status": "other", "run_id": "r1"}) is None


def test_task_rows_show_agent_and_status():
    rows = chat_logic.task_rows({"tasks": {"t1": {"agent_id": "a1", "status": "running", "instruction": "x" * 300}}})
    assert rows == [["t1", "a1", "running", "x" * 120]]
    assert chat_logic.task_rows({"tasks": None}) == []


EVENT = {"id": "e1", "sender": "orchestrator", "recipient": "agent-1", "kind": "task", "thread_id": "th",
         "payload": {"instruction": "write hello.py"}, "created_at": "2026-12-03T06:00:01+00:00"}


def test_event_filters_match_as_the_server_does_and_refuse_a_bad_regex():
    assert views.EventFilter().matches(EVENT)
    assert views.EventFilter(kind="task", regex="hello").matches({"seq": 3, "envelope": EVENT})
    assert not views.EventFilter(sender="agent-1").matches(EVENT)
    assert not views.EventFilter(regex="goodbye").matches(EVENT)
    assert views.EventFilter(thread_id="th", regex="").query() == {"thread_id": "th"}
    with pytest.raises(PanelError, match="bad regex"):
        views.EventFilter(regex="(unclosed").query()
    assert views.event_row(EVENT) == ["06:00:01", "orchestrator", "agent-1", "task", "th", "e1"]


def test_event_pages_read_lists_and_cursors():
    assert views.events_page([EVENT]) == ([EVENT], None)
    assert views.events_page({"events": [EVENT], "next_cursor": "c2"}) == ([EVENT], "c2")
    assert views.events_page(None) == ([], None)


def test_metadata_filters_parse_or_say_why_not():
    assert views.parse_metadata_filter("a=1, b = two") == {"a": "1", "b": "two"}
    assert views.parse_metadata_filter('{"a": 1}') == {"a": 1}
    assert views.parse_metadata_filter("  ") == {}
    with pytest.raises(PanelError, match="key=value"):
        views.parse_metadata_filter("nonsense")
    with pytest.raises(PanelError, match="JSON"):
        views.parse_metadata_filter("{bad")


def test_fleet_and_run_tables():
    agent = {"agent_id": "a1", "kind": "coder", "capabilities": ["python"], "node": "n" * 40,
             "workspace_id": "default", "heartbeat_age_s": 0.42, "healthy": True, "hotpath": False,
             "current_task_id": "t1", "current_thread_id": "th"}
    assert views.fleet_rows([agent]) == [["a1", "coder", "python", "n" * 12, "default", "0.4 s ago", "yes", "no",
                                          "t1", "th"]]
    assert "**cap** 4" in views.fleet_summary({"cap": 4, "alive": 1})
    assert views.parse_capabilities(" a, ,b ") == ["a", "b"]
    run = {"run_id": "r", "assistant_id": "x", "status": "success", "created_at": "2026-12-03T06:00:00Z",
           "updated_at": "2026-12-03T06:00:02.5Z"}
    assert views.run_rows([run])[0][-1] == "2.5 s"
    assert views.run_rows([{**run, "status": "running"}])[0][-1] == "running"
    history = [{"checkpoint": {"checkpoint_id": "cp"}, "metadata": {"step": 2, "source": "loop"}, "next": ["tools"],
                "values": {"messages": [1, 2]}, "created_at": None}]
    assert views.checkpoint_rows(history) == [["cp", "2", "loop", "tools", "2", ""]]


def test_files_languages_binary_and_diffs():
    entries = [{"path": "src", "is_dir": True}, {"path": "src/a.py", "size": 10}, {"path": "b.bin", "size": 2048}]
    assert views.file_tree(entries) == "b.bin  (2.0 KiB)\nsrc/\n  a.py  (10 B)"
    assert views.file_paths(entries) == ["b.bin", "src/a.py"]
    assert views.language_for("x/y.py") == "python" and views.language_for("Dockerfile") == "dockerfile"
    assert views.language_for("notes.unknown") is None
    assert views.decode_text(b"hi\n") == "hi\n" and views.decode_text(b"\x00\x01") is None
    assert views.decode_text(b"\xff\xfe") is None
    diff = views.diff_markdown({"added": ["n.txt"], "removed": [], "modified": ["a.py"]})
    assert "`+ n.txt`" in diff and "**removed** (0)" in diff and "`~ a.py`" in diff
    assert views.snapshot_choices([{"snapshot_id": "s1", "label": "before"}])[0][1] == "s1"


SCRAPE_1 = """# TYPE ray_quadracode_api_runs_total counter
ray_quadracode_api_runs_total{graph="orchestrator",status="success",installation="x"} 2
# TYPE quadracode_api_run_seconds histogram
quadracode_api_run_seconds_bucket{graph="orchestrator",le="+Inf"} 2
quadracode_api_run_seconds_sum{graph="orchestrator"} 1.0
quadracode_api_run_seconds_count{graph="orchestrator"} 2
# TYPE ray_quadracode_agents_alive gauge
ray_quadracode_agents_alive{source="fleet"} 1
"""
SCRAPE_2 = SCRAPE_1.replace("success\",installation=\"x\"} 2", "success\",installation=\"x\"} 8").replace(
    "_sum{graph=\"orchestrator\"} 1.0", "_sum{graph=\"orchestrator\"} 4.0").replace(
    "_count{graph=\"orchestrator\"} 2", "_count{graph=\"orchestrator\"} 4").replace("} 1\n", "} 3\n")


def test_metrics_become_rates_means_and_gauges():
    history = metrics_logic.MetricsHistory(keep=2)
    history.add(100.0, SCRAPE_1)
    history.add(102.0, SCRAPE_2)
    by_title = {chart.metric: history.series(chart) for chart in metrics_logic.CHARTS}
    assert [(r["series"], r["value"]) for r in by_title["api_runs_total"]] == [("orchestrator", 3.0)]
    assert [(r["series"], r["value"]) for r in by_title["api_run_seconds"]] == [("orchestrator", 1.5)]
    assert [(r["series"], r["value"]) for r in by_title["agents_alive"]] == [("fleet", 3.0)]
    assert by_title["envelopes_total"] == []
    assert [r["t"] for r in by_title["api_runs_total"]] == [0.0]  # seconds before the latest sample
    history.add(104.0, SCRAPE_2)
    assert len(history.scrapes) == 2  # bounded
    assert [(r["t"], r["value"]) for r in history.series(metrics_logic.CHARTS[0])] == [(0.0, 0.0)]


def test_metrics_frames_are_typed_and_the_latest_figures_listed():
    empty = metrics_logic.series_frame([])
    # Typed even when empty: an untyped first frame would make the plot's axes categorical.
    assert [str(t) for t in empty.dtypes] == ["float64", "float64", "object"] and list(empty.columns) == [
        "t", "value", "series"]
    history = metrics_logic.MetricsHistory()
    assert metrics_logic.sampling_note(history, []) == "waiting for the first two samples…"
    for at, text in ((100.0, SCRAPE_1), (102.0, SCRAPE_2), (104.0, SCRAPE_2)):
        history.add(at, text)
    series = [history.series(chart) for chart in metrics_logic.CHARTS]
    frame = metrics_logic.series_frame(series[0])
    assert frame["t"].tolist() == [-2.0, 0.0] and frame["value"].tolist() == [3.0, 0.0]
    rows = metrics_logic.latest_rows(series)
    assert ["API runs per second, by graph", "orchestrator", "0", "runs/s"] in rows
    assert ["Agents alive", "fleet", "3", "agents"] in rows
    assert ["Envelopes per second", "", "no figures yet", "envelopes/s"] in rows
    assert metrics_logic.sampling_note(history, series) == "3 samples over 4 s; 3 of 6 charts have figures"


def test_a_counter_that_appears_reads_0_before_and_a_mean_has_points_only_where_something_ended():
    history = metrics_logic.MetricsHistory()
    envelopes = SCRAPE_1 + "# TYPE ray_quadracode_envelopes_total counter\nray_quadracode_envelopes_total{kind=\"note\"} 6\n"
    for at, text in ((100.0, SCRAPE_1), (102.0, SCRAPE_1), (104.0, envelopes)):
        history.add(at, text)
    by_metric = {chart.metric: chart for chart in metrics_logic.CHARTS}
    assert [(r["t"], r["value"]) for r in history.series(by_metric["envelopes_total"])] == [(-2.0, 0.0), (0.0, 3.0)]
    assert history.series(by_metric["api_run_seconds"]) == []  # no run ended in either interval


def test_the_api_url_is_found_from_the_panel_page_under_any_prefix():
    assert api_url_from_page("http://h:8000/ui/gradio_api/queue/join?x=1") == "http://h:8000"
    assert api_url_from_page("http://h:8000/qr-app/ui/gradio_api/queue/join") == "http://h:8000/qr-app"
    assert api_url_from_page("http://h:8000/qr-app/ui") == "http://h:8000/qr-app"


def test_errors_read_as_one_sentence():
    request = httpx.Request("GET", "http://x/fleet/agents")
    conflict = httpx.Response(409, json={"detail": "the fleet is at its cap of 4 agents"}, request=request)
    assert readable(httpx.HTTPStatusError("x", request=request, response=conflict)) == \
        "409: the fleet is at its cap of 4 agents"
    invalid = httpx.Response(422, json={"detail": [{"loc": ["body", "kind"], "msg": "field required"}]},
                             request=request)
    assert readable(httpx.HTTPStatusError("x", request=request, response=invalid)) == "422: kind: field required"
    assert readable(httpx.ConnectError("refused")).startswith("Cannot reach the API")
    assert readable(PanelError("as is")) == "as is"


async def test_a_key_given_in_the_panel_goes_with_every_call_and_only_that_sessions():
    from serve_app.panel.client import PanelClient
    from serve_app.panel.ui_common import PanelContext

    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-api-key"))
        return httpx.Response(401, json={"detail": "Missing API key"}) if not request.headers.get("x-api-key") \
            else httpx.Response(200, json=[])

    ctx = PanelContext("http://api.test")
    with_key, without = ctx.client(None, "k-alice"), ctx.client(None, "")
    assert ctx.client(None, "k-alice") is with_key and with_key is not without
    for client in (with_key, without):
        client.http = httpx.AsyncClient(base_url=client.url, headers=client.headers,
                                        transport=httpx.MockTransport(answer))
    assert await with_key.workspaces() == []
    with pytest.raises(PanelError, match="401: Missing API key"):
        await without.workspaces()
    assert seen == ["k-alice", None]
    assert isinstance(PanelClient("http://x/", "k").url, str) and PanelClient("http://x/").url == "http://x"


def test_a_missing_or_refused_key_says_where_to_give_one():
    from serve_app.panel.client import status_of
    from serve_app.panel.ui_common import access_note

    request = httpx.Request("GET", "http://x/threads/search")
    missing = httpx.Response(401, json={"detail": "Missing API key: send 'X-Api-Key: <key>'."}, request=request)
    refused = httpx.Response(403, json={"detail": "Invalid API key."}, request=request)
    admin_only = httpx.Response(403, json={"detail": "admin keys only"}, request=request)
    error = httpx.HTTPStatusError("x", request=request, response=missing)
    assert readable(error).endswith("Paste your key in the API key field at the top of the panel and press Use key.")
    assert status_of(error) == 401 and status_of(PanelError("x", 403)) == 403 and status_of(ValueError()) is None
    refused_text = readable(httpx.HTTPStatusError("x", request=request, response=refused))
    assert refused_text == "403: Invalid API key. Check the key in the API key field at the top of the panel."
    assert readable(httpx.HTTPStatusError("x", request=request, response=admin_only)) == "403: admin keys only"
    assert "asks for a key" in access_note(401, readable(error), False)
    assert access_note(403, refused_text, True) == "Key refused: the API refused this key (403: Invalid API key.)."
    assert access_note(None, "", True).startswith("✓ Key accepted") and access_note(None, "", False) == ""
    assert access_note(503, "503: down", False) == "The API did not answer as expected: 503: down"


def test_a_threads_spent_tokens_and_cost_show_when_its_metadata_has_them():
    spent = {"input_tokens": 1200, "output_tokens": 34, "total_tokens": 1234, "cost_usd": 0.01234, "model_calls": 3}
    rows = views.thread_rows([
        {"thread_id": "t1", "status": "idle", "metadata": {"usage": spent, "project": "x"}},
        {"thread_id": "t2", "status": "busy", "metadata": {}},
    ])
    assert rows[0][3:] == ["1,234", "$0.0123", '{"project": "x"}']
    assert rows[1][3:] == ["", "", "{}"]
    assert views.usage_of({"usage": "garbage"}) == ("", "")


def test_a_settings_save_sends_only_what_changed_and_a_blank_budget_is_no_limit():
    from serve_app.panel import settings_logic

    loaded = {"max_iterations": 25, "max_hours": 4.0, "max_agents_per_thread": 8, "budget_thread_tokens": 50000,
              "budget_thread_cost_usd": None, "budget_task_tokens": None, "budget_task_cost_usd": 0.5}
    shown = settings_logic.field_values(loaded)
    assert shown == [25, 4.0, 8, 50000, None, None, 0.5]
    assert settings_logic.changes(loaded, shown) == {}
    # Gradio's numbers come as floats; a blank guardrail is kept, a blank budget clears it.
    edited = [37.0, None, 8, None, 1.25, 1000.0, 0.5]
    assert settings_logic.changes(loaded, edited) == {"max_iterations": 37, "budget_thread_tokens": None,
                                                      "budget_thread_cost_usd": 1.25, "budget_task_tokens": 1000}
    # Nothing loaded (the load failed): blanks send nothing, so a Save cannot clear budgets by accident.
    assert settings_logic.changes(None, [None] * 7) == {}
    assert settings_logic.saved_note({"max_iterations": 37, "budget_thread_tokens": None}) == \
        "**✓ Saved:** max_iterations=37, budget_thread_tokens=no limit"
    assert settings_logic.loaded_note({"source": "persisted", "updated_by": "alice",
                                       "updated_at": "2026-12-03T15:28:36.17Z"}) == \
        "Loaded: last saved by alice at 2026-12-03 15:28:36 UTC."
    assert "nothing saved" in settings_logic.loaded_note({"source": "settings"})


def test_a_charts_axes_end_past_its_outermost_points_at_round_values():
    rows = [{"t": -3.0, "value": 2.0, "series": "a"}, {"t": 0.0, "value": 0.5, "series": "b"}]
    assert metrics_logic.y_top(rows) == 2.5  # 2.0 and 10 % more, rounded up to a round value
    assert metrics_logic.y_top([{"t": 0.0, "value": 0.85, "series": "a"}]) == 1.0
    assert metrics_logic.y_top([{"t": 0.0, "value": 0.9125, "series": "a"}]) == 1.5
    assert metrics_logic.y_top([{"t": 0.0, "value": 330.0, "series": "a"}]) == 400.0
    assert metrics_logic.y_top([{"t": 0.0, "value": 0.0413, "series": "a"}]) == pytest.approx(0.05)
    assert metrics_logic.y_top([{"t": 0.0, "value": 0.0, "series": "a"}]) == 1.0  # all zero: still an axis
    assert metrics_logic.y_top([]) == 1.0
    assert metrics_logic.x_span(rows) == [-30.6, 0.6]  # the 30 s window, a little room past both ends
    assert metrics_logic.x_span([{"t": -31.0, "value": 1.0, "series": "a"}]) == [-61.2, 1.2]
    assert metrics_logic.x_span([{"t": -359.0, "value": 1.0, "series": "a"}]) == [-489.6, 9.6]


def test_a_shown_table_is_checked_for_rows_still_at_work():
    import pandas as pd

    rows = [["t1", "idle", "07:19"], ["t2", "busy", "07:20"]]
    assert views.column_has(rows, 1, ("busy",))
    assert views.column_has(pd.DataFrame(rows, columns=["thread_id", "status", "updated"]), 1, ("busy",))
    assert not views.column_has(rows[:1], 1, ("busy",))
    assert not views.column_has(pd.DataFrame([], columns=["run_id", "assistant", "status"]), 2, ("running",))
    assert not views.column_has(None, 1, ("busy",))
