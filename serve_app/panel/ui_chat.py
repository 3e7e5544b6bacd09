"""The Chat tab: an assistant and a thread, replies redrawn at each streamed message chunk, tool calls as
collapsible steps, the thread's delegated tasks, interrupts as accept / edit / respond cards,
cancel and emergency stop. After each run the tab keeps watching the thread (join_stream), so an
agent's result that arrives later shows up without a reload."""

from __future__ import annotations

import json
import uuid
from typing import Any

import gradio as gr

from serve_app.panel import chat_logic, views
from serve_app.panel.client import PanelClient, PanelError, readable
from serve_app.panel.ui_common import PanelContext, guarded

TASK_HEADERS = ["task_id", "agent", "status", "what"]
NEW_THREAD = "(new thread)"


def _card(interrupts: list[dict[str, Any]]) -> tuple[Any, Any, Any, Any]:
    if not interrupts:
        return gr.update(visible=False), "", gr.update(value=""), None
    value = interrupts[0]
    return (gr.update(visible=True), chat_logic.describe_interrupt(value),
            gr.update(value=json.dumps(chat_logic.accept_value(value))), value)


def _after_run(shown: tuple, run_status: str | None) -> str:
    """The status line once a run ended: halted on an interrupt, cancelled, failed, or done."""
    card = shown[2]
    if isinstance(card, dict) and card.get("visible"):
        return "‖ the run halted and waits for your answer on the card below"
    if run_status == "interrupted":
        return "■ the run was cancelled; watching the thread for later results"
    if run_status == "error":
        return "✗ the run failed; watching the thread for later results"
    return "✓ run finished; watching the thread for later results"


async def _thread_choices(client: PanelClient, busy: str | None = None) -> list[tuple[str, str]]:
    """The thread picker's choices, each labelled with its thread's status (``busy``: a thread
    whose run the tab saw start, labelled busy whatever the search read: a short run may end
    before the search, and its end reads the labels again)."""
    threads = await client.search_threads(limit=50)
    choices = [(NEW_THREAD, "")]
    for thread in threads:
        metadata = thread.get("metadata") or {}
        title = metadata.get("title") or "" if isinstance(metadata, dict) else ""
        tokens, cost = views.usage_of(metadata)
        spent = f" · {tokens} tokens {cost}".rstrip() if tokens else ""
        status = "busy" if thread["thread_id"] == busy else thread.get("status", "")
        label = f"{thread['thread_id'][:8]}… {status} {title}".strip() + spent
        choices.append((label, thread["thread_id"]))
    return choices


def build_chat_tab(ctx: PanelContext, key: gr.State) -> dict[str, Any]:
    with gr.Row():
        assistant = gr.Dropdown(label="Assistant", choices=[], allow_custom_value=True, elem_id="chat-assistant",
                                scale=2)
        thread = gr.Dropdown(label="Thread", choices=[(NEW_THREAD, "")], value="", allow_custom_value=True,
                             elem_id="chat-thread", scale=3)
        refresh = gr.Button("↻ Threads", scale=0, min_width=90, elem_id="chat-refresh-threads")
        new = gr.Button("New thread", scale=0, min_width=110, elem_id="chat-new-thread")
    chatbot = gr.Chatbot(label="Conversation", height=460, elem_id="chat-log", group_consecutive_messages=False)
    with gr.Group(visible=False, elem_id="interrupt-card") as card:
        card_text = gr.Markdown()
        respond_text = gr.Textbox(label="Respond", placeholder="your answer or new instructions",
                                  elem_id="interrupt-respond-text")
        edit_text = gr.Code(label="Edit the resume value (JSON)", language="json", lines=2,
                            elem_id="interrupt-edit-value")
        with gr.Row():
            accept = gr.Button("Accept", variant="primary", elem_id="interrupt-accept")
            edit = gr.Button("Edit and resume", elem_id="interrupt-edit")
            respond = gr.Button("Respond", elem_id="interrupt-respond")
    with gr.Row():
        message = gr.Textbox(label="Message", placeholder="Ask the assistant…", scale=6, elem_id="chat-input",
                             lines=1, submit_btn=False)
        send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
        cancel = gr.Button("Cancel run", scale=1, elem_id="chat-cancel")
        stop = gr.Button("Emergency stop", variant="stop", scale=1, elem_id="chat-stop")
    status = gr.Markdown(elem_id="chat-status")
    tasks = gr.Dataframe(headers=TASK_HEADERS, label="Delegated tasks", interactive=False, elem_id="chat-tasks",
                         value=[])
    interrupt_state = gr.State(None)
    # Changed by the thread's watcher at each run start or end it sees (see ``follow``); hidden.
    run_signal = gr.Textbox(value="", elem_id="chat-run-signal", elem_classes=["qr-hidden"], show_label=False,
                            container=False)

    @guarded
    async def load(key_value: str, request: gr.Request):
        client = ctx.client(request, key_value)
        assistants = await client.assistants()
        choices = [(f"{a.get('name') or a['graph_id']} ({a['graph_id']})", a["assistant_id"]) for a in assistants]
        preferred = next((a["assistant_id"] for a in assistants if a.get("graph_id") == "orchestrator"),
                         choices[0][1] if choices else None)
        return (gr.update(choices=choices, value=preferred),
                gr.update(choices=await _thread_choices(client)))

    @guarded
    async def refresh_threads(key_value: str, current: str, request: gr.Request):
        return gr.update(choices=await _thread_choices(ctx.client(request, key_value)), value=current)

    @guarded
    async def new_thread(key_value: str, request: gr.Request):
        client = ctx.client(request, key_value)
        created = await client.create_thread(metadata={"created_by": "panel"})
        choices = await _thread_choices(client)
        return gr.update(choices=choices, value=created["thread_id"]), [], [], *_card([])

    async def _state(client: PanelClient, thread_id: str) -> tuple[dict, tuple, str | None]:
        """The thread's values, what the tab shows for them, and the status of its latest run."""
        state = await client.thread_state(thread_id)
        values = state.get("values") or {}
        values = values if isinstance(values, dict) else {}
        runs = await client.runs(thread_id, limit=1)
        run_status = runs[0].get("status") if runs else None
        interrupts = chat_logic.pending_interrupts(state)
        chat = chat_logic.to_chat(values.get("messages") or [])
        if not interrupts:  # (a halted run's pending step waits for the answer on the card)
            chat = chat_logic.settle_steps(chat, run_status)
        return values, (chat, chat_logic.task_rows(values), *_card(interrupts)), run_status

    async def _show(client: PanelClient, thread_id: str):
        return (await _state(client, thread_id))[1]

    @guarded
    async def open_thread(key_value: str, thread_id: str, request: gr.Request):
        _supersede(request)
        if not thread_id:
            return [], [], *_card([])
        return await _show(ctx.client(request, key_value), thread_id)

    async def _stream(client: PanelClient, thread_id: str, assistant_id: str, *, text: str | None = None,
                      command: dict | None = None):
        view = chat_logic.ChatStream()
        before = await client.thread_state(thread_id)
        view.set_values(before.get("values") if isinstance(before.get("values"), dict) else {})
        view.start(text)
        yield view.render(), chat_logic.task_rows(view.values), *_card([]), "running…"
        payload = {"messages": [{"role": "user", "content": text}]} if text is not None else None
        async for part in client.stream_run(thread_id, assistant_id, input=payload, command=command):
            if part.event == "error":
                raise PanelError(f"the run failed: {part.data}")
            if view.feed(part.event, part.data):
                yield view.render(), chat_logic.task_rows(view.values), *_card([]), "running…"
        _, shown, run_status = await _state(client, thread_id)
        yield (*shown, _after_run(shown, run_status))

    @guarded
    async def send_message(key_value: str, assistant_id: str, thread_id: str, text: str, request: gr.Request):
        text = (text or "").strip()
        if not text:
            raise gr.Error("Type a message first.")
        if not assistant_id:
            raise gr.Error("Pick an assistant first.")
        _supersede(request)
        client = ctx.client(request, key_value)
        if not thread_id:
            thread_id = (await client.create_thread(metadata={"created_by": "panel"}))["thread_id"]
        # The thread picker's labels carry each thread's status: read before the run (a new thread
        # joins the list), once at its first streamed part (this thread busy), and again once it
        # ended (``refresh_threads`` after each run, below).
        choices, drawn = await _thread_choices(client), 0
        async for update in _stream(client, thread_id, assistant_id, text=text):
            yield gr.update(value=thread_id, choices=choices), "", *update
            drawn += 1
            if drawn == 2:  # (the first update is drawn before the run starts)
                choices = await _thread_choices(client)

    # The newest watcher of each browser session: a send, a resume or a thread switch makes the
    # older watchers stale, and a stale one stops at its next event instead of drawing.
    watch_generation: dict[str, int] = {}

    def _supersede(request: gr.Request) -> int:
        if len(watch_generation) > 10_000:
            watch_generation.clear()
        session = request.session_hash or ""
        watch_generation[session] = watch_generation.get(session, 0) + 1
        return watch_generation[session]

    async def follow(key_value: str, thread_id: str, request: gr.Request):
        """Watch the thread (its later runs too) until superseded or cancelled. A failure ends the
        watch with a note in the status line; the conversation shown stays. A run seen starting
        (e.g. one an agent's delegated result started) or ending changes ``run_signal``, whose
        change reads the thread labels again (this thread busy while its run goes on)."""
        mine = _supersede(request)
        if not thread_id:
            return
        client = ctx.client(request, key_value)
        view = chat_logic.ChatStream()
        # Always a whole string: Gradio sends a generator's later outputs as diffs of the ones before,
        # which a dropdown update here did not survive (its value ended empty), so the labels are
        # read by a plain event on this signal's change instead.
        signal = ""
        try:
            view.set_values((await _state(client, thread_id))[0])
            async for part in client.join_thread(thread_id):
                if watch_generation.get(request.session_hash or "") != mine:
                    return
                if part.event.startswith("messages"):
                    # Tokens say nothing of the interrupt card: it stays as the last state read
                    # left it (a join replays a run still ending from its start, tokens included).
                    if view.feed(part.event, part.data):
                        yield view.render(), chat_logic.task_rows(view.values), *(gr.skip() for _ in range(4)), \
                            gr.update(), signal
                elif part.event not in ("heartbeat", "ping"):
                    # A state, a run's start or end, a custom event: redraw from the thread's state.
                    values, shown, _ = await _state(client, thread_id)
                    view.set_values(values)
                    lifecycle = chat_logic.run_lifecycle(part.event, part.data)
                    if lifecycle is not None:
                        signal = f"{thread_id} {lifecycle} {uuid.uuid4().hex[:8]}"
                    yield *shown, gr.update(), signal
        except Exception as exc:  # noqa: BLE001 - shown to the user in one line
            yield *(gr.skip() for _ in range(6)), f"stopped watching the thread: {readable(exc)}", signal

    @guarded
    async def labels_on_signal(key_value: str, current: str, signal: str, request: gr.Request):
        """The thread labels read again at a run's start or end the watcher saw (``signal``:
        ``"<thread_id> started|ended <nonce>"``), the thread of a run started shown busy."""
        parts = (signal or "").split()
        busy = parts[0] if len(parts) == 3 and parts[1] == "started" else None
        return gr.update(choices=await _thread_choices(ctx.client(request, key_value), busy=busy), value=current)

    def _resume(make_value):
        @guarded
        async def resume(key_value: str, assistant_id: str, thread_id: str, interrupt: dict | None,
                         respond_value: str, edit_value: str, request: gr.Request):
            if not thread_id or interrupt is None:
                raise gr.Error("Nothing to resume on this thread.")
            value = make_value(interrupt, respond_value, edit_value)
            _supersede(request)
            async for update in _stream(ctx.client(request, key_value), thread_id, assistant_id,
                                        command={"resume": value}):
                yield update
        return resume

    accept_fn = _resume(lambda i, r, e: chat_logic.accept_value(i))
    respond_fn = _resume(lambda i, r, e: chat_logic.respond_value(i, r))
    edit_fn = _resume(lambda i, r, e: chat_logic.edit_value(e))

    @guarded
    async def cancel_run(key_value: str, thread_id: str, request: gr.Request):
        if not thread_id:
            raise gr.Error("No thread selected.")
        client = ctx.client(request, key_value)
        active = [r for r in await client.runs(thread_id) if r.get("status") in ("pending", "running")]
        for run in active:
            await client.cancel_run(thread_id, run["run_id"])
        return f"cancelled {len(active)} run(s)" if active else "no active run to cancel"

    @guarded
    async def emergency_stop(key_value: str, thread_id: str, request: gr.Request):
        if not thread_id:
            raise gr.Error("No thread selected.")
        await ctx.client(request, key_value).stop_thread(thread_id)
        return "Emergency stop sent to the thread"

    card_outputs = [card, card_text, edit_text, interrupt_state]
    shown = [chatbot, tasks, *card_outputs]
    follow_inputs = [key, thread]
    opening = thread.input(open_thread, [key, thread], shown)
    # The watcher runs as long as the thread is open: no progress animation for it.
    watching = opening.then(follow, follow_inputs, [*shown, status, run_signal], concurrency_limit=None,
                            show_progress="hidden")
    sending = send.click(send_message, [key, assistant, thread, message], [thread, message, *shown, status],
                         concurrency_limit=None, cancels=[watching])
    submitting = message.submit(send_message, [key, assistant, thread, message], [thread, message, *shown, status],
                                concurrency_limit=None, cancels=[watching])
    resume_inputs = [key, assistant, thread, interrupt_state, respond_text, edit_text]
    resumed = [accept.click(accept_fn, resume_inputs, [*shown, status], concurrency_limit=None, cancels=[watching]),
               edit.click(edit_fn, resume_inputs, [*shown, status], concurrency_limit=None, cancels=[watching]),
               respond.click(respond_fn, resume_inputs, [*shown, status], concurrency_limit=None, cancels=[watching])]
    after_runs = [sending, submitting, *resumed]
    # Each run's end: the thread labels read again (a send or resume left them as read mid-run).
    for event in after_runs:
        event.success(refresh_threads, [key, thread], thread, show_progress="hidden")
    watchers = [event.success(follow, follow_inputs, [*shown, status, run_signal], concurrency_limit=None,
                              show_progress="hidden") for event in after_runs]
    run_signal.change(labels_on_signal, [key, thread, run_signal], thread, show_progress="hidden")
    cancel.click(cancel_run, [key, thread], status)
    stop.click(emergency_stop, [key, thread], status)
    refresh.click(refresh_threads, [key, thread], thread)
    new.click(new_thread, [key], [thread, chatbot, tasks, *card_outputs], cancels=[watching, *watchers])
    return {"load": (load, [key], [assistant, thread]), "thread": thread}
