"""The Event monitor tab: the live event log pushed over ``/events/stream`` (SSE, not a timed
refresh), filters by sender, recipient, kind, thread and regex, pause and resume (resuming from
the last event seen), an event's payload on click, older events paged from history."""

from __future__ import annotations

from typing import Any

import gradio as gr

from serve_app.panel import views
from serve_app.panel.ui_common import PanelContext, guarded

SHOWN = 300


def build_events_tab(ctx: PanelContext, key: gr.State) -> dict[str, Any]:
    with gr.Row():
        sender = gr.Textbox(label="Sender", elem_id="events-sender")
        recipient = gr.Textbox(label="Recipient", elem_id="events-recipient")
        kind = gr.Textbox(label="Kind", elem_id="events-kind")
        thread = gr.Textbox(label="Thread", elem_id="events-thread")
        regex = gr.Textbox(label="Regex on the payload", elem_id="events-regex")
    with gr.Row():
        apply = gr.Button("Apply filters and watch live", variant="primary", elem_id="events-apply")
        pause = gr.Button("Pause", elem_id="events-pause")
        older = gr.Button("Older events", elem_id="events-older")
    with gr.Row():
        state_note = gr.Markdown(elem_id="events-note")
        count_note = gr.Markdown(elem_id="events-count")
    table = gr.Dataframe(headers=views.EVENT_HEADERS, label="Events, newest first (click one for its payload)",
                         interactive=False, elem_id="events-table", value=[], max_height=480)
    payload = gr.JSON(label="Payload", elem_id="events-payload")
    # Per browser session: the events shown (newest first), the history cursor, the last live id.
    shown = gr.State(None)
    # The newest watch of each browser session: a watch started by an earlier Apply is still
    # reading its stream, and must stop rather than draw its old filter's rows over the new ones.
    newest_watch: dict[str, int] = {}
    # What each session shows, shared by its live watch and "Older events": each gets its own
    # copy of a gr.State, so the watch's next live event would drop the older pages added since.
    showing: dict[str, dict] = {}

    def _session(request: gr.Request) -> str:
        if len(showing) > 10_000:
            showing.clear()
        return getattr(request, "session_hash", None) or ""

    def _filter(s: str, r: str, k: str, t: str, x: str) -> views.EventFilter:
        return views.EventFilter(sender=s.strip(), recipient=r.strip(), kind=k.strip(), thread_id=t.strip(),
                                 regex=x)

    @guarded
    async def watch(key_value: str, s: str, r: str, k: str, t: str, x: str, kept: dict | None,
                    request: gr.Request):
        wanted = _filter(s, r, k, t, x)
        query = wanted.query()  # a bad regex is an error here, before any request
        client = ctx.client(request, key_value)
        session = _session(request)
        mine = newest_watch[session] = newest_watch.get(session, 0) + 1
        kept = showing.get(session) or kept
        resume_from = (kept or {}).get("last_id") if (kept or {}).get("query") == query else None
        if resume_from is None:
            events, cursor = views.events_page(await client.events(limit=100, **query))
            kept = {"events": events, "cursor": cursor, "last_id": None, "query": query}
        showing[session] = kept
        yield kept, views.events_table(kept["events"]), "● live", _count(kept)
        async for event_name, event_id, data in client.event_stream(last_event_id=resume_from, **query):
            if newest_watch.get(session) != mine:
                return
            kept = showing.setdefault(session, kept)
            if event_id:
                kept["last_id"] = event_id
            if not isinstance(data, dict) or event_name in ("heartbeat", "ping") or not wanted.matches(data):
                continue
            kept["events"] = [data, *kept["events"]][:SHOWN]
            yield kept, views.events_table(kept["events"]), "● live", _count(kept)

    @guarded
    async def page_older(key_value: str, kept: dict | None, request: gr.Request):
        kept = showing.get(_session(request)) or kept
        if not kept or not kept.get("cursor"):
            raise gr.Error("No older events (apply the filters first, or this is the oldest page).")
        events, cursor = views.events_page(await ctx.client(request, key_value).events(
            limit=100, cursor=kept["cursor"], **kept["query"]))
        kept["events"], kept["cursor"] = [*kept["events"], *events], cursor  # the live watch sees them too
        showing[_session(request)] = kept
        return kept, views.events_table(kept["events"]), _count(kept)

    def _count(kept: dict) -> str:
        more = "older pages remain" if kept.get("cursor") else "the oldest is shown"
        return f"{len(kept['events'])} events shown ({more})"

    def show_payload(kept: dict | None, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        events = (kept or {}).get("events") or []
        if not 0 <= row < len(events):
            return gr.update()
        return views.envelope_of(events[row])

    # trigger_mode="multiple": a watch never ends by itself, and Gradio's default ("once") ignores
    # a click while the previous one is pending, so Apply with new filters did nothing.
    # show_progress="hidden": the watch is pending as long as it is live, and Gradio's progress
    # bars and outline would sit on the table and notes for all that time.
    watching = apply.click(watch, [key, sender, recipient, kind, thread, regex, shown],
                           [shown, table, state_note, count_note], concurrency_limit=None, trigger_mode="multiple",
                           show_progress="hidden")
    pause.click(lambda: "paused (Apply resumes from the last event seen)", None, state_note, cancels=[watching])
    older.click(page_older, [key, shown], [shown, table, count_note])
    table.select(show_payload, [shown], payload)
    return {}
