"""MCP servers written for the tests with the official ``mcp`` SDK (tests/actors/test_mcp_tools.py)."""
