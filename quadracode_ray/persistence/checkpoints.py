"""The checkpointer of API runs: LangGraph's ``AsyncPostgresSaver`` writing checkpoint metadata
as the official Agent Server's saver does."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver


class ApiCheckpointSaver(AsyncPostgresSaver):
    """Also keeps ``thread_id`` in a checkpoint's metadata when the run's ``config["metadata"]``
    names it: LangGraph's base saver drops that key, the official server's keeps its config
    metadata whole, so clients reading ``metadata.thread_id`` of a state find it on both."""

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        thread_id = (config.get("metadata") or {}).get("thread_id")
        if thread_id is not None and "thread_id" not in metadata:
            metadata = {**metadata, "thread_id": thread_id}
        return await super().aput(config, checkpoint, metadata, new_versions)
