"""Reusable test suites for LLM provider adapters."""
