"""The API's ingress setting: the environment a Ray head gets for it, and bad values refused."""

from __future__ import annotations

import pytest

from quadracode_ray import serve_ingress
from quadracode_ray.config import Settings
from quadracode_ray.serve_ingress import IngressUnavailable, ingress_env


def test_haproxy_mode_env_has_its_own_ports_and_a_short_drain():
    first = ingress_env("haproxy")
    assert first["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert first["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "1"
    # Several clusters on one machine: HAProxy's stats and metrics listeners never on fixed ports.
    assert {first["RAY_SERVE_HAPROXY_STATS_PORT"], first["RAY_SERVE_HAPROXY_METRICS_PORT"]}.isdisjoint(
        {"8404", "9101"})
    assert first["RAY_SERVE_HAPROXY_STATS_PORT"] != first["RAY_SERVE_HAPROXY_METRICS_PORT"]


def test_proxy_mode_gives_the_proxy_its_unanswered_request_middleware():
    from serve_app.proxy_errors import PROXY_CALLBACK

    assert ingress_env("proxy") == {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": PROXY_CALLBACK}


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown Serve ingress 'nginx'"):
        ingress_env("nginx")
    with pytest.raises(ValueError):
        Settings(_env_file=None, serve_ingress="nginx")


def test_haproxy_mode_without_haproxy_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(serve_ingress.shutil, "which", lambda name: None)
    with pytest.raises(IngressUnavailable, match="provision-haproxy.sh"):
        ingress_env("haproxy")


def test_the_default_is_serves_python_proxy_until_haproxy_mode_passed_the_api_tests():
    assert Settings(_env_file=None).serve_ingress == "proxy"
