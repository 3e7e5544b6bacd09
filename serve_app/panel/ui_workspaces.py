"""The Workspaces tab: workspaces with status, limits, disk and node; a file tree and a viewer /
editor (syntax highlighting where Gradio's Code knows the language, binary files offered as a
download); upload; an exec console whose output streams; background processes; snapshots (take,
diff as added / removed / modified, restore)."""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import gradio as gr

from serve_app.panel import views
from serve_app.panel.client import PanelError
from serve_app.panel.ui_common import PanelContext, guarded


def exec_text(event: str, data: Any) -> tuple[str, dict | None]:
    """(output text, final result or None) of one event of a streamed exec: ``output`` events
    ({stream, data}) as the command writes, then one ``result`` or ``error`` ({status, detail})."""
    if event == "error":
        detail = data.get("detail") if isinstance(data, dict) else data
        raise PanelError(f"the command failed: {detail}")
    if not isinstance(data, dict):
        return "", None
    if event == "result":
        return "", data
    return str(data.get("data") or ""), None


def build_workspaces_tab(ctx: PanelContext, key: gr.State) -> dict[str, Any]:
    with gr.Row():
        workspace = gr.Textbox(label="Workspace", value="default", scale=2, elem_id="ws-id")
        network = gr.Checkbox(label="Network on (for a new one)", scale=1, elem_id="ws-network")
        create = gr.Button("Create / open", scale=1, elem_id="ws-create")
        refresh = gr.Button("↻ Refresh", scale=1, elem_id="ws-refresh")
    table = gr.Dataframe(headers=views.WORKSPACE_HEADERS, label="Workspaces (click one)", interactive=False,
                         elem_id="ws-table", value=[])
    with gr.Row():
        with gr.Column(scale=1):
            tree = gr.Code(label="Files", language=None, lines=16, interactive=False, elem_id="ws-tree")
            upload = gr.File(label="Upload into the folder of the path below", elem_id="ws-upload")
        with gr.Column(scale=2):
            with gr.Row():
                path = gr.Dropdown(label="File path", choices=[], allow_custom_value=True, scale=3, elem_id="ws-path")
                open_file = gr.Button("Open", scale=0, min_width=80, elem_id="ws-open")
                save = gr.Button("Save", variant="primary", scale=0, min_width=80, elem_id="ws-save")
                delete = gr.Button("Delete", variant="stop", scale=0, min_width=80, elem_id="ws-delete")
            editor = gr.Code(label="Editor", language=None, lines=16, interactive=True, elem_id="ws-editor")
            download = gr.File(label="Download", interactive=False, elem_id="ws-download")
    note = gr.Markdown(elem_id="ws-note")
    with gr.Row():
        command = gr.Textbox(label="Command", scale=5, elem_id="ws-command")
        run = gr.Button("Run", variant="primary", scale=1, elem_id="ws-run")
        start = gr.Button("Start in background", scale=1, elem_id="ws-start-process")
    output = gr.Code(label="Output", language="shell", lines=10, interactive=False, elem_id="ws-output")
    with gr.Row():
        processes = gr.Dataframe(headers=views.PROCESS_HEADERS, label="Background processes", interactive=False,
                                 elem_id="ws-processes", value=[])
        with gr.Column():
            pid = gr.Textbox(label="Process id", elem_id="ws-pid")
            with gr.Row():
                check = gr.Button("Refresh processes", elem_id="ws-check-processes")
                stop_process = gr.Button("Stop process", variant="stop", elem_id="ws-stop-process")
    with gr.Row():
        label = gr.Textbox(label="Snapshot label", scale=2, elem_id="ws-snapshot-label")
        take = gr.Button("Take snapshot", scale=1, elem_id="ws-snapshot-take")
        snapshot = gr.Dropdown(label="Snapshot", choices=[], scale=3, elem_id="ws-snapshot")
        diff = gr.Button("Diff with now", scale=1, elem_id="ws-snapshot-diff")
        restore = gr.Button("Restore", variant="stop", scale=1, elem_id="ws-snapshot-restore")
    diff_view = gr.Markdown(elem_id="ws-diff")

    def _ws(value: str) -> str:
        if not (value or "").strip():
            raise gr.Error("Name a workspace first.")
        return value.strip()

    @guarded
    async def list_all(key_value: str, request: gr.Request):
        return views.workspace_rows(await ctx.client(request, key_value).workspaces())

    @guarded
    async def browse(key_value: str, ws: str, request: gr.Request):
        client = ctx.client(request, key_value)
        entries = views.file_entries(await client.list_files(_ws(ws), ".", recursive=True))
        snaps = views.snapshot_choices(await client.snapshots(_ws(ws)))
        return (views.file_tree(entries), gr.update(choices=views.file_paths(entries)),
                gr.update(choices=snaps, value=snaps[-1][1] if snaps else None))

    @guarded
    async def create_ws(key_value: str, ws: str, net: bool, request: gr.Request):
        await ctx.client(request, key_value).create_workspace(_ws(ws), network=net)
        return (await list_all(key_value, request), *(await browse(key_value, ws, request)))

    @guarded
    async def read(key_value: str, ws: str, file_path: str, request: gr.Request):
        if not file_path:
            raise gr.Error("Pick a file first.")
        data = await ctx.client(request, key_value).read_file(_ws(ws), file_path)
        saved = Path(tempfile.mkdtemp(prefix="qr-panel-")) / (PurePosixPath(file_path).name or "file")
        saved.write_bytes(data)
        text = views.decode_text(data)
        if text is None:
            return gr.update(value="", language=None), str(saved), f"binary file ({views.human_bytes(len(data))}): download it"
        return gr.update(value=text, language=views.language_for(file_path)), str(saved), f"opened {file_path}"

    @guarded
    async def write(key_value: str, ws: str, file_path: str, text: str, request: gr.Request):
        if not file_path:
            raise gr.Error("Name the file first.")
        await ctx.client(request, key_value).write_file(_ws(ws), file_path, (text or "").encode())
        return f"saved {file_path}", *(await browse(key_value, ws, request))

    @guarded
    async def remove(key_value: str, ws: str, file_path: str, request: gr.Request):
        await ctx.client(request, key_value).delete_file(_ws(ws), file_path)
        return f"deleted {file_path}", *(await browse(key_value, ws, request))

    @guarded
    async def put_upload(key_value: str, ws: str, file_path: str, uploaded: Any, request: gr.Request):
        if not uploaded:
            return gr.update(), gr.update(), gr.update(), gr.update()
        local = Path(uploaded if isinstance(uploaded, str) else uploaded.name)
        folder = PurePosixPath(file_path).parent if file_path else PurePosixPath(".")
        target = str(folder / local.name)
        await ctx.client(request, key_value).write_file(_ws(ws), target, local.read_bytes())
        return f"uploaded {target}", *(await browse(key_value, ws, request))

    @guarded
    async def execute(key_value: str, ws: str, cmd: str, request: gr.Request):
        if not (cmd or "").strip():
            raise gr.Error("Type a command first.")
        text = f"$ {cmd}\n"
        yield text
        async for event, _, data in ctx.client(request, key_value).exec_stream(_ws(ws), cmd):
            chunk, result = exec_text(event, data)
            if result is not None:
                text += f"\n[exit {result.get('exit_code')}" + (" · timed out" if result.get("timed_out") else "") + "]"
            text += chunk
            yield text

    @guarded
    async def processes_of(key_value: str, ws: str, request: gr.Request):
        return views.process_rows(await ctx.client(request, key_value).processes(_ws(ws)))

    @guarded
    async def start_bg(key_value: str, ws: str, cmd: str, request: gr.Request):
        if not (cmd or "").strip():
            raise gr.Error("Type a command first.")
        proc = await ctx.client(request, key_value).start_process(_ws(ws), cmd)
        return str(proc.get("process_id", "")), await processes_of(key_value, ws, request)

    @guarded
    async def stop_bg(key_value: str, ws: str, process_id: str, request: gr.Request):
        if not (process_id or "").strip():
            raise gr.Error("Pick a process first.")
        await ctx.client(request, key_value).stop_process(_ws(ws), process_id.strip())
        return await processes_of(key_value, ws, request)

    @guarded
    async def snap(key_value: str, ws: str, text: str, request: gr.Request):
        taken = await ctx.client(request, key_value).take_snapshot(_ws(ws), text or None)
        *_, choices = await browse(key_value, ws, request)
        return f"snapshot {taken.get('snapshot_id') or taken.get('id')} taken", choices

    @guarded
    async def show_diff(key_value: str, ws: str, sid: str, request: gr.Request):
        if not sid:
            raise gr.Error("Pick a snapshot first.")
        return views.diff_markdown(await ctx.client(request, key_value).snapshot_diff(_ws(ws), sid))

    @guarded
    async def do_restore(key_value: str, ws: str, sid: str, request: gr.Request):
        if not sid:
            raise gr.Error("Pick a snapshot first.")
        await ctx.client(request, key_value).restore_snapshot(_ws(ws), sid)
        return f"restored {sid}", *(await browse(key_value, ws, request))

    def pick(evt: gr.SelectData):
        values = getattr(evt, "row_value", None) or []
        return str(values[0]) if values else gr.update()

    browsed = [tree, path, snapshot]
    refresh.click(list_all, [key], table).then(browse, [key, workspace], browsed)
    create.click(create_ws, [key, workspace, network], [table, *browsed])
    table.select(pick, None, workspace).then(browse, [key, workspace], browsed)
    open_file.click(read, [key, workspace, path], [editor, download, note])
    save.click(write, [key, workspace, path, editor], [note, *browsed])
    delete.click(remove, [key, workspace, path], [note, *browsed])
    upload.upload(put_upload, [key, workspace, path, upload], [note, *browsed])
    run.click(execute, [key, workspace, command], output, concurrency_limit=None)
    command.submit(execute, [key, workspace, command], output, concurrency_limit=None)
    start.click(start_bg, [key, workspace, command], [pid, processes])
    check.click(processes_of, [key, workspace], [processes])
    stop_process.click(stop_bg, [key, workspace, pid], [processes])
    processes.select(pick, None, pid)
    take.click(snap, [key, workspace, label], [note, snapshot])
    diff.click(show_diff, [key, workspace, snapshot], diff_view)
    restore.click(do_restore, [key, workspace, snapshot], [note, *browsed])
    return {"load": (list_all, [key], [table])}
