"""pytest plugin for the official langgraph-sdk integration suite run against our server:
its test_remote_graph_v3.py has ``URL = "http://localhost:2024"`` written in (a port taken on
these machines); point every module's ``URL`` at LANGGRAPH_INTEGRATION_URL instead."""

from __future__ import annotations

import os

import pytest

WRITTEN_IN = "http://localhost:2024"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    url = os.environ["LANGGRAPH_INTEGRATION_URL"]
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and getattr(module, "URL", None) == WRITTEN_IN:
            module.URL = url
