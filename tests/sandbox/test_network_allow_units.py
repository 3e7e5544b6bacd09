"""Network allow-lists, the pure parts: entries checked and normalized, host names resolved
(from the settings' names, the resolver replaced), the firewall chain's content, settings."""

from __future__ import annotations

import socket

import pytest

from quadracode_ray.config import Settings
from quadracode_ray.interfaces.network_allow import parse_allow_list
from quadracode_ray.interfaces.workspace import WorkspaceInvalidRequest
from sandbox.deployments import firewall
from sandbox.deployments.docker import DockerDeploymentConfig
from sandbox.models import EgressRule, WorkspaceSpec


def test_entries_are_normalized():
    assert parse_allow_list(["PyPI.org:443", "10.0.0.1", "10.1.0.0/16:8000-8099", "pypi.org:443", "host.test."]) == [
        "pypi.org:443", "10.0.0.1/32", "10.1.0.0/16:8000-8099", "host.test"]
    assert parse_allow_list(True) is True and parse_allow_list(False) is False
    assert parse_allow_list(["10.0.0.1:1-65535"]) == ["10.0.0.1/32"]


@pytest.mark.parametrize(("value", "message"), [
    ([], "empty"), ("pypi.org", "false, true or a list"), (["a b"], "not a host name"), ([""], "empty"),
    (["x.test:0"], "1-65535"), (["x.test:70000"], "1-65535"), (["x.test:9-8"], "low before high"),
    (["x.test:http"], "a number"), (["::1"], "IPv6"), (["[::1]:80"], "IPv6"), (["0.0.0.0/0"], "every address"),
    (["10.0.0.0/33"], "not a host name"), (["x.test\n:80"], "not a host name"), (["1.2.3"], "not a host name"), ([1], "not a string"),
    (["h.test"] * 1 + [f"h{i}.test" for i in range(64)], "at most 64"),
])
def test_bad_entries_are_refused_with_what_is_wrong(value, message):
    with pytest.raises(ValueError, match=message):
        parse_allow_list(value)
    with pytest.raises(ValueError, match=message):
        WorkspaceSpec(network=value)


def test_names_resolve_from_the_settings_first(monkeypatch):
    looked_up = []

    def fake_getaddrinfo(host, *args):
        looked_up.append(host)
        if host == "two.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.0.2", 0)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.0.1", 0))]
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    rules = firewall.resolve(["known.test:80", "two.test", "10.1.0.0/16:22"], {"known.test": "10.8.0.1"})
    assert rules == [EgressRule(entry="known.test:80", addresses=["10.8.0.1/32"], ports=(80, 80)),
                     EgressRule(entry="two.test", addresses=["10.9.0.1/32", "10.9.0.2/32"], ports=(1, 65535)),
                     EgressRule(entry="10.1.0.0/16:22", addresses=["10.1.0.0/16"], ports=(22, 22))]
    assert looked_up == ["two.test"]
    assert firewall.hosts_entries(rules) == ["known.test:10.8.0.1", "two.test:10.9.0.1", "two.test:10.9.0.2"]
    with pytest.raises(WorkspaceInvalidRequest, match="cannot resolve 'nowhere.test'"):
        firewall.resolve(["nowhere.test:80"], {})


def test_the_chain_accepts_replies_and_the_list_and_refuses_the_rest():
    rules = [EgressRule(entry="a.test:80", addresses=["10.8.0.1/32"], ports=(80, 80))]
    lines = firewall.chain_rules("QRW-x", rules)
    assert lines[0] == ["-A", "QRW-x", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]
    assert ["-A", "QRW-x", "-d", "10.8.0.1/32", "-p", "tcp", "--dport", "80:80", "-j", "ACCEPT"] in lines
    assert ["-A", "QRW-x", "-d", "10.8.0.1/32", "-p", "udp", "--dport", "80:80", "-j", "ACCEPT"] in lines
    assert lines[-2:] == [["-A", "QRW-x", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
                          ["-A", "QRW-x", "-j", "REJECT", "--reject-with", "icmp-admin-prohibited"]]
    bridge, chain = firewall.egress_names("inst", "ws-1")
    assert len(bridge) <= 15 and len(chain) <= 28 and (bridge, chain) == firewall.egress_names("inst", "ws-1")
    assert firewall.egress_names("inst", "ws-2") != (bridge, chain)
    jumps = firewall.jump_rules(bridge, chain)
    assert ["DOCKER-USER", "-i", bridge, "-j", chain] in jumps and ["INPUT", "-i", bridge, "-j", chain] in jumps


def test_the_settings_give_the_default_and_the_spec_overrides_it(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, sandbox_network='["pypi.org:443"]',
                        sandbox_network_hosts={"Internal.Test": "10.0.0.5"})
    assert settings.sandbox_network == ["pypi.org:443"] and settings.sandbox_network_hosts == {"internal.test": "10.0.0.5"}
    config = DockerDeploymentConfig.from_settings(settings)
    assert config.limits(WorkspaceSpec()).network == ["pypi.org:443"]
    assert config.limits(WorkspaceSpec(network=False)).network is False
    assert config.limits(WorkspaceSpec(network=["10.0.0.5:80"])).network == ["10.0.0.5/32:80"]
    assert Settings(_env_file=None, data_dir=tmp_path, sandbox_network="true").sandbox_network is True
    for bad in ('["bad host"]', "maybe"):
        with pytest.raises(ValueError, match="sandbox_network"):
            Settings(_env_file=None, data_dir=tmp_path, sandbox_network=bad)
    with pytest.raises(ValueError, match="not an IPv4 address"):
        Settings(_env_file=None, data_dir=tmp_path, sandbox_network_hosts={"a.test": "nope"})
