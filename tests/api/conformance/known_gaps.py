"""Tests of the official langgraph-sdk integration suite that do not pass against our server,
each with its reason. Empty when the whole suite passes."""

KNOWN_GAPS: dict[str, str] = {}
