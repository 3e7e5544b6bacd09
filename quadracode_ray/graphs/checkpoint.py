"""Checkpoint isolation: one namespace per assistant over one shared saver.

LangGraph's root ``checkpoint_ns`` does not isolate two root graphs on one thread (they read
each other's checkpoints), so ``NamespacedSaver`` wraps any saver (AsyncPostgresSaver in
production, InMemorySaver in tests) and stores thread ``T`` of assistant ``A`` as thread
``A::T``. Graphs and callers keep using plain thread ids; two assistants sharing thread id
``T`` never collide, and deleting ``T`` for one assistant leaves the other's alone.

How to use it: ``build_*_graph(..., checkpointer=saver, namespace="<assistant>")`` or
``namespaced(saver, "<assistant>")``. Every process that runs an assistant's threads (the API's
run executor, the orchestrator actor) must use the same namespace for it, or none: the
factories default to none (thread ids as given, as LangGraph Platform does) so runners that
attach their own saver and probe it directly still agree. Delegated tasks never share a
thread with their parent: each runs on its own thread (``task_thread_id``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple

SEPARATOR = "::"


def task_thread_id(task_id: str) -> str:
    """The thread a delegated task's agent graph runs on."""
    return f"task-{task_id}"


class NamespacedSaver(BaseCheckpointSaver):
    def __init__(self, inner: BaseCheckpointSaver, namespace: str):
        if not namespace or SEPARATOR in namespace:
            raise ValueError(f"namespace must be non-empty and must not contain {SEPARATOR!r}")
        super().__init__(serde=inner.serde)
        self.inner, self.namespace = inner, namespace
        self._prefix = namespace + SEPARATOR

    # --- thread id mapping ---------------------------------------------------------------------
    def _tid(self, thread_id: str) -> str:
        return self._prefix + str(thread_id)

    def _in(self, config: RunnableConfig | None) -> RunnableConfig | None:
        if config is None:
            return None
        configurable = dict(config.get("configurable") or {})
        if "thread_id" in configurable:
            configurable["thread_id"] = self._tid(configurable["thread_id"])
        return {**config, "configurable": configurable}

    def _out_config(self, config: RunnableConfig | None) -> RunnableConfig | None:
        if config is None:
            return None
        configurable = dict(config.get("configurable") or {})
        tid = str(configurable.get("thread_id", ""))
        if tid.startswith(self._prefix):
            configurable["thread_id"] = tid[len(self._prefix):]
        return {**config, "configurable": configurable}

    def _out(self, item: CheckpointTuple | None) -> CheckpointTuple | None:
        if item is None:
            return None
        return item._replace(config=self._out_config(item.config), parent_config=self._out_config(item.parent_config))

    def _mine(self, item: CheckpointTuple) -> bool:
        return str(item.config["configurable"].get("thread_id", "")).startswith(self._prefix)

    @property
    def config_specs(self):
        return self.inner.config_specs

    # --- sync API ----------------------------------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._out(self.inner.get_tuple(self._in(config)))

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None, limit: int | None = None) -> Iterator[CheckpointTuple]:
        count = 0
        for item in self.inner.list(self._in(config), filter=filter, before=self._in(before),
                                    limit=limit if config is not None else None):
            if self._mine(item):
                yield self._out(item)
                count += 1
                if limit is not None and count >= limit:
                    return

    def put(self, config, checkpoint, metadata, new_versions) -> RunnableConfig:
        return self._out_config(self.inner.put(self._in(config), checkpoint, metadata, new_versions))

    def put_writes(self, config, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        self.inner.put_writes(self._in(config), writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        self.inner.delete_thread(self._tid(thread_id))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.inner.copy_thread(self._tid(source_thread_id), self._tid(target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self.inner.prune([self._tid(t) for t in thread_ids], strategy=strategy)

    def get_delta_channel_history(self, *, config: RunnableConfig, channels: Sequence[str]):
        return self.inner.get_delta_channel_history(config=self._in(config), channels=channels)

    # --- async API ------------------------------------------------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._out(await self.inner.aget_tuple(self._in(config)))

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        count = 0
        async for item in self.inner.alist(self._in(config), filter=filter, before=self._in(before),
                                           limit=limit if config is not None else None):
            if self._mine(item):
                yield self._out(item)
                count += 1
                if limit is not None and count >= limit:
                    return

    async def aput(self, config, checkpoint, metadata, new_versions) -> RunnableConfig:
        return self._out_config(await self.inner.aput(self._in(config), checkpoint, metadata, new_versions))

    async def aput_writes(self, config, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        await self.inner.aput_writes(self._in(config), writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self.inner.adelete_thread(self._tid(thread_id))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self.inner.acopy_thread(self._tid(source_thread_id), self._tid(target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self.inner.aprune([self._tid(t) for t in thread_ids], strategy=strategy)

    async def aget_delta_channel_history(self, *, config: RunnableConfig, channels: Sequence[str]):
        return await self.inner.aget_delta_channel_history(config=self._in(config), channels=channels)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self.inner.adelete_for_runs(run_ids)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self.inner.delete_for_runs(run_ids)

    def get_next_version(self, current, channel):
        return self.inner.get_next_version(current, channel)

    def with_allowlist(self, extra_allowlist):
        return NamespacedSaver(self.inner.with_allowlist(extra_allowlist), self.namespace)


def namespaced(saver: BaseCheckpointSaver | None, namespace: str | None) -> BaseCheckpointSaver | None:
    """``saver`` isolated under ``namespace``; no namespace (or no saver) leaves it as it is."""
    if saver is None or namespace is None or (isinstance(saver, NamespacedSaver) and saver.namespace == namespace):
        return saver
    return NamespacedSaver(saver, namespace)
