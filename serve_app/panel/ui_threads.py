"""The Threads and runs tab: search threads by status and metadata; a thread's runs (status,
duration, cancel); its checkpoints with the state at each; fork from a checkpoint (update_state
at it, then continue) and replay from it."""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from serve_app.panel import chat_logic, views
from serve_app.panel.client import PanelError
from serve_app.panel.ui_common import PanelContext, guarded

STATUSES = ["", "idle", "busy", "interrupted", "error"]
# While a thread shown is busy, or a run shown is pending or running, the tables are read again
# this often: a status read at page load (or at a search) would otherwise stay as it was then.
REFRESH_S = 2.0


def build_threads_tab(ctx: PanelContext, key: gr.State) -> dict[str, Any]:
    with gr.Row():
        status = gr.Dropdown(STATUSES, value="", label="Status", scale=1, elem_id="threads-status")
        metadata = gr.Textbox(label="Metadata (key=value, … or JSON)", scale=3, elem_id="threads-metadata")
        search = gr.Button("Search", variant="primary", scale=0, min_width=100, elem_id="threads-search")
    threads = gr.Dataframe(headers=views.THREAD_HEADERS, label="Threads (click one)", interactive=False,
                           elem_id="threads-table", value=[])
    with gr.Row():
        thread_id = gr.Textbox(label="Thread", scale=3, elem_id="threads-thread-id")
        load = gr.Button("Load", scale=0, min_width=90, elem_id="threads-load")
    with gr.Row():
        with gr.Column(scale=1):
            runs = gr.Dataframe(headers=views.RUN_HEADERS, label="Runs (click one to pick it)", interactive=False,
                                elem_id="threads-runs", value=[])
            with gr.Row():
                run_id = gr.Textbox(label="Run", scale=3, elem_id="threads-run-id")
                cancel = gr.Button("Cancel run", scale=1, elem_id="threads-cancel-run")
        with gr.Column(scale=1):
            history = gr.Dataframe(headers=views.CHECKPOINT_HEADERS, label="Checkpoints, newest first (click one)",
                                   interactive=False, elem_id="threads-history", value=[])
    with gr.Row():
        with gr.Column(scale=1):
            checkpoint = gr.Textbox(label="Checkpoint", elem_id="threads-checkpoint-id")
            state_view = gr.JSON(label="State at this checkpoint", elem_id="threads-state")
        with gr.Column(scale=1):
            assistant = gr.Textbox(label="Assistant to continue with (id or graph name)", value="orchestrator",
                                   elem_id="threads-assistant")
            as_node = gr.Textbox(label="Write the values as node (the run continues after it; e.g. `ingest` "
                                       "for the orchestrator)", elem_id="threads-as-node")
            fork_values = gr.Code(label="Fork: values to write at the checkpoint (JSON)", language="json", lines=4,
                                  value='{"messages": [{"role": "user", "content": "…"}]}',
                                  elem_id="threads-fork-values")
            with gr.Row():
                fork = gr.Button("Fork and continue", variant="primary", elem_id="threads-fork")
                replay = gr.Button("Replay from here", elem_id="threads-replay")
            branch = gr.Chatbot(label="The branch's conversation", height=320, elem_id="threads-branch",
                                group_consecutive_messages=False)
    note = gr.Markdown(elem_id="threads-note")
    searched = gr.State(None)  # the filters of the search shown, which a refresh repeats
    shown_thread = gr.State("")  # the thread whose runs are shown
    refresher = gr.Timer(REFRESH_S)

    @guarded
    async def do_search(key_value: str, status_value: str, metadata_text: str, request: gr.Request):
        filters = {"status": status_value or None, "metadata": views.parse_metadata_filter(metadata_text)}
        found = await ctx.client(request, key_value).search_threads(**filters)
        return views.thread_rows(found), filters

    async def refresh(key_value: str, filters: dict | None, table: Any, thread: str, run_table: Any,
                      history_table: Any, request: gr.Request):
        """The threads and runs shown read again while one of them is still at work, and a thread's
        runs and checkpoints read again once its newest checkpoint is not the one shown (a run
        started elsewhere, a fork, a state update)."""
        client = ctx.client(request, key_value)
        rows, run_rows, history_rows = gr.skip(), gr.skip(), gr.skip()
        try:
            if filters is not None and views.column_has(table, 1, ("busy",)):
                rows = views.thread_rows(await client.search_threads(**filters))
            if thread:
                newest = await client.history(thread, limit=1)
                moved = bool(newest) and views.checkpoint_id_of(newest[0]) != views.first_cell(history_table)
                if moved or views.column_has(run_table, 2, ("pending", "running")):
                    run_rows = views.run_rows(await client.runs(thread))
                if moved:
                    history_rows = views.checkpoint_rows(await client.history(thread))
        except PanelError:  # a timed read: the next tick tries again, no toast every 2 s
            pass
        return rows, run_rows, history_rows

    @guarded
    async def load_thread(key_value: str, thread: str, request: gr.Request):
        thread = (thread or "").strip()
        if not thread:
            raise gr.Error("Pick a thread first.")
        client = ctx.client(request, key_value)
        run_list = await client.runs(thread)
        states = await client.history(thread)
        return views.run_rows(run_list), views.checkpoint_rows(states), thread

    def pick_thread(evt: gr.SelectData, table: Any):
        return _row_value(evt, table, 0)

    def pick_run(evt: gr.SelectData, table: Any):
        return _row_value(evt, table, 0)

    @guarded
    async def pick_checkpoint(key_value: str, thread: str, evt: gr.SelectData, table: Any, request: gr.Request):
        checkpoint_id = _row_value(evt, table, 0)
        state = await ctx.client(request, key_value).thread_state(thread, checkpoint_id=checkpoint_id)
        return checkpoint_id, state.get("values")

    @guarded
    async def cancel_run(key_value: str, thread: str, run: str, request: gr.Request):
        if not thread or not run:
            raise gr.Error("Pick a thread and a run first.")
        client = ctx.client(request, key_value)
        await client.cancel_run(thread, run)
        yield f"cancelling run {run}…", views.run_rows(await client.runs(thread))
        try:
            await client.join_run(thread, run)  # the list then shows the status it ended in
        except PanelError as exc:
            yield f"cancel sent to run {run}; not seen ending yet ({exc})", views.run_rows(await client.runs(thread))
            return
        yield f"cancelled run {run}", views.run_rows(await client.runs(thread))

    async def _continue(client, thread: str, assistant_id: str, checkpoint_id: str):
        view = chat_logic.ChatStream()
        async for part in client.stream_run(thread, assistant_id, input=None, checkpoint_id=checkpoint_id):
            if part.event == "error":
                raise PanelError(f"the run failed: {part.data}")
            if view.feed(part.event, part.data):
                yield view.render()

    @guarded
    async def do_fork(key_value: str, thread: str, checkpoint_id: str, assistant_id: str, values_text: str,
                      node: str, request: gr.Request):
        if not thread or not checkpoint_id:
            raise gr.Error("Pick a thread and one of its checkpoints first.")
        try:
            values = json.loads(values_text or "{}")
        except ValueError as exc:
            raise gr.Error(f"The fork's values are not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise gr.Error("The fork's values must be a JSON object.")
        client = ctx.client(request, key_value)
        forked = await client.fork(thread, checkpoint_id, values, as_node=node.strip() or None)
        new_checkpoint = (forked.get("checkpoint") or {}).get("checkpoint_id") or forked.get("checkpoint_id")
        branch_state = await client.thread_state(thread, checkpoint_id=new_checkpoint)
        if not branch_state.get("next"):
            shown = chat_logic.to_chat((branch_state.get("values") or {}).get("messages") or [])
            yield shown, (f"forked at {checkpoint_id} → {new_checkpoint}; nothing runs next from there (name the node "
                          "the values are written as to continue after it)")
            return
        yield [], f"forked at {checkpoint_id} → new checkpoint {new_checkpoint}; continuing…"
        async for shown in _continue(client, thread, assistant_id.strip(), new_checkpoint):
            yield shown, f"forked at {checkpoint_id} → {new_checkpoint}; running…"
        yield gr.update(), f"✓ fork of {checkpoint_id} finished (new branch from {new_checkpoint})"

    @guarded
    async def do_replay(key_value: str, thread: str, checkpoint_id: str, assistant_id: str, request: gr.Request):
        if not thread or not checkpoint_id:
            raise gr.Error("Pick a thread and one of its checkpoints first.")
        client = ctx.client(request, key_value)
        async for shown in _continue(client, thread, assistant_id.strip(), checkpoint_id):
            yield shown, f"replaying from {checkpoint_id}…"
        yield gr.update(), f"✓ replay from {checkpoint_id} finished"

    search.click(do_search, [key, status, metadata], [threads, searched])
    threads.select(pick_thread, [threads], thread_id).then(load_thread, [key, thread_id], [runs, history, shown_thread])
    load.click(load_thread, [key, thread_id], [runs, history, shown_thread])
    refresher.tick(refresh, [key, searched, threads, shown_thread, runs, history], [threads, runs, history],
                   show_progress="hidden")
    runs.select(pick_run, [runs], run_id)
    history.select(pick_checkpoint, [key, thread_id, history], [checkpoint, state_view])
    cancel.click(cancel_run, [key, thread_id, run_id], [note, runs])
    fork.click(do_fork, [key, thread_id, checkpoint, assistant, fork_values, as_node], [branch, note],
               concurrency_limit=None).then(load_thread, [key, thread_id], [runs, history, shown_thread])
    replay.click(do_replay, [key, thread_id, checkpoint, assistant], [branch, note],
                 concurrency_limit=None).then(load_thread, [key, thread_id], [runs, history, shown_thread])
    return {"load": (do_search, [key, status, metadata], [threads, searched])}


def _row_value(evt: gr.SelectData, table: Any, column: int) -> str:
    """The value in ``column`` of the clicked row (the click may be on any cell)."""
    row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
    values = getattr(evt, "row_value", None)
    if values:
        return str(values[column])
    try:
        return str(table.iloc[row, column])
    except AttributeError:
        return str(table[row][column])
