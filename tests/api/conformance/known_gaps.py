"""Tests of the official langgraph-sdk integration suite that may not pass against our server,
each with its reason. ``KNOWN_GAPS`` must fail (one that passes is stale and must go);
``RACY`` may pass or fail."""

KNOWN_GAPS: dict[str, str] = {}

# The suite's own race, in the SDK's two connections per thread session: the lifecycle watcher
# (its own SSE connection, opened at run.start; a thread of its own in the sync client) reads
# `input.requested` and then pushes end-of-stream into every projection's queue
# (`_signal_paused`), while the projection's events (`thread.messages`,
# `thread.extensions[...]`) come on the other connection. The graph reaches its interrupt within
# milliseconds, so when the machine is loaded and the projection's connection is the slower one,
# the projection ends empty ("expected at least one streamed message", "unexpected step
# sequence: []") or cut short. No server can order events across two connections.
# Shown against the official server itself (`langgraph dev` of langgraph-api 0.16.7 with the
# suite's graphs, on this loaded machine, 2026-12-03) with tests/api/conformance/race_repro.py,
# 10 attempts a run: test_messages_sync failed 2, 4 and 0 times in three runs (empty stream),
# test_extensions_sync 4, 6 and 8 (empty or cut short), test_messages_async 1 of 10,
# test_extensions_async 4 of 10 -- the same failures as against ours.
_SDK_RACE = "the SDK's lifecycle connection ends the projection before its own connection delivers (see comment)"

RACY: dict[str, str] = {
    "test_messages.py::test_messages_async": _SDK_RACE,
    "test_messages.py::test_messages_sync": _SDK_RACE,
    "test_extensions.py::test_extensions_sync": _SDK_RACE,
    "test_extensions.py::test_extensions_async": _SDK_RACE,
}
