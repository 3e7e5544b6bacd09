"""The tabs built on the operator API (issue 11's routes), in the order shown."""

from __future__ import annotations

from serve_app.panel.ui_events import build_events_tab
from serve_app.panel.ui_fleet import build_fleet_tab
from serve_app.panel.ui_metrics import build_metrics_tab
from serve_app.panel.ui_settings import build_settings_tab
from serve_app.panel.ui_workspaces import build_workspaces_tab

TABS = [("Event monitor", build_events_tab), ("Fleet", build_fleet_tab), ("Workspaces", build_workspaces_tab),
        ("Metrics", build_metrics_tab), ("Settings", build_settings_tab)]
