"""Tests of the official langgraph-sdk integration suite that may not pass against our server,
each with its reason. ``KNOWN_GAPS`` must fail (one that passes is stale and must go);
``RACY`` may pass or fail."""

KNOWN_GAPS: dict[str, str] = {}

RACY: dict[str, str] = {
    # The SDK reads an interrupt on one SSE connection (its lifecycle watcher, opened at
    # run.start) and the messages on another (opened by `thread.messages` right after); the
    # interrupt ends the messages iterator. When the machine is loaded and the second stream's
    # replay of the thread reaches the client after the first stream's interrupt, the iterator
    # ends empty. Failed in the first two full-suite runs under load (54 of 55), passed alone;
    # the replica's shared tape (serve_app/runs/v3_tape.py) narrows the window.
    "test_messages.py::test_messages_async": "two SSE connections race under load (see comment)",
    # Both failed in the full run of 2026-12-03 (53 of 55 passed; the async variants passed that
    # time) with an empty stream, as test_messages_async does under load: believed the same race,
    # not yet shown. To be fixed with the v3 SSE oracle test (tests/api/test_oracle_v3.py).
    "test_messages.py::test_messages_sync": "an empty stream under load, believed the race above (unverified)",
    "test_extensions.py::test_extensions_sync": "an empty stream under load, believed the race above (unverified)",
}
