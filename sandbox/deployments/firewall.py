"""Network allow-lists: a workspace reaches only the hosts and ports its list names.

Enforced outside the container, in the host's firewall, on a network of the workspace's own:

- the workspace gets its own Docker bridge network (bridge interface ``qrw<hash>``), so every
  packet it sends arrives on an interface that is its alone, whatever address it claims;
- one iptables chain per workspace (``QRW-<hash>``) is jumped to from ``DOCKER-USER`` (packets
  it sends elsewhere, before Docker's own rules) and from ``INPUT`` (packets to the host itself:
  the gateway, the host's services). The chain accepts replies of established connections and
  the listed addresses and ports (TCP and UDP), and refuses the rest (TCP reset, ICMP
  admin-prohibited), so a refused connection fails at once instead of hanging;
- host names are resolved by the host when the workspace is created; their addresses go into
  the rules and into the workspace's ``/etc/hosts``. The workspace's DNS server is its own
  network's gateway, which the chain refuses: names not listed do not resolve at all (no
  queries leave, so nothing can be smuggled out in them); such a lookup fails after about a
  second (resolver timeout 1 s, one attempt).

Why a firewall and not an egress proxy: it holds for every protocol and client (a proxy only
for clients that honour ``HTTP_PROXY``), needs no extra container, and the rules live in the
host's network namespace, which a workspace (its own namespace, no capability) cannot reach.
The rules are applied before the container starts, on every start (a host reboot drops them).
IPv4 only: the workspace networks have no IPv6.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess

from quadracode_ray.interfaces.network_allow import parse_entry
from quadracode_ray.interfaces.workspace import WorkspaceInvalidRequest, WorkspaceUnavailable
from sandbox.models import EgressRule

MAX_ADDRESSES = 256
IPTABLES_TIMEOUT_S = 30.0


def egress_names(installation_id: str, workspace_id: str) -> tuple[str, str]:
    """``(bridge interface, iptables chain)`` of a workspace: short (15 and 28 characters at
    most), and the same on every host for the same workspace."""
    digest = hashlib.sha256(f"{installation_id}/{workspace_id}".encode()).hexdigest()[:12]
    return f"qrw{digest}", f"QRW-{digest}"


def resolve(entries: list[str], extra_hosts: dict[str, str]) -> list[EgressRule]:
    """The allow-list's entries with their addresses; ``extra_hosts`` first, then the host's
    resolver. A name that does not resolve is a WorkspaceInvalidRequest naming it."""
    rules: list[EgressRule] = []
    for entry in entries:
        host, ports = parse_entry(entry)
        if "/" in host:
            addresses = [host]
        elif host in extra_hosts:
            addresses = [f"{extra_hosts[host]}/32"]
        else:
            try:
                infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
            except OSError as exc:
                raise WorkspaceInvalidRequest(f"network allow-list entry {entry!r}: cannot resolve {host!r} ({exc})") from None
            addresses = sorted({f"{info[4][0]}/32" for info in infos})
        rules.append(EgressRule(entry=entry, addresses=addresses, ports=ports))
    if sum(len(rule.addresses) for rule in rules) > MAX_ADDRESSES:
        raise WorkspaceInvalidRequest(f"network allow-list resolves to more than {MAX_ADDRESSES} addresses")
    return rules


def hosts_entries(rules: list[EgressRule]) -> list[str]:
    """``name:address`` lines for the workspace's /etc/hosts: the listed names, nothing else."""
    lines = []
    for rule in rules:
        host, _ = parse_entry(rule.entry)
        if "/" not in host:
            lines.extend(f"{host}:{address.removesuffix('/32')}" for address in rule.addresses)
    return lines


def chain_rules(chain: str, rules: list[EgressRule]) -> list[list[str]]:
    """The chain's content, as iptables arguments (pure: tested without a firewall)."""
    lines = [["-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]]
    for rule in rules:
        first, last = rule.ports
        for address in rule.addresses:
            for protocol in ("tcp", "udp"):
                lines.append(["-A", chain, "-d", address, "-p", protocol, "--dport", f"{first}:{last}", "-j", "ACCEPT"])
    lines.append(["-A", chain, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"])
    lines.append(["-A", chain, "-j", "REJECT", "--reject-with", "icmp-admin-prohibited"])
    return lines


def jump_rules(bridge: str, chain: str) -> list[list[str]]:
    """Where the chain is entered: what the workspace sends through the host and to the host,
    and the replies coming back to it (Docker's isolation between its networks would drop them)."""
    return [["DOCKER-USER", "-i", bridge, "-j", chain],
            ["INPUT", "-i", bridge, "-j", chain],
            ["DOCKER-USER", "-o", bridge, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]]


def _iptables(*args: str, check: bool = True) -> bool:
    binary = shutil.which("iptables")
    if binary is None:
        raise WorkspaceUnavailable("network allow-lists need iptables on the host (Docker's firewall tool)")
    done = subprocess.run([binary, "-w", str(int(IPTABLES_TIMEOUT_S)), *args], capture_output=True, text=True,
                          timeout=IPTABLES_TIMEOUT_S + 5)
    if check and done.returncode != 0:
        raise WorkspaceUnavailable(f"could not set the workspace's firewall (iptables {' '.join(args)}): "
                                   f"{done.stderr.strip()} (the host side must run as root)")
    return done.returncode == 0


def apply(bridge: str, chain: str, rules: list[EgressRule]) -> None:
    """Set the workspace's chain to ``rules`` and make sure it is entered (idempotent).

    The chain is emptied and refilled while already entered: meanwhile its last rules are
    missing and a packet falls through to Docker's own rules, so the refill happens only
    before the container starts (the deployment's order)."""
    if not _iptables("-N", chain, check=False):
        _iptables("-F", chain)
    for line in chain_rules(chain, rules):
        _iptables(*line)
    for jump in jump_rules(bridge, chain):
        if not _iptables("-C", *jump, check=False):
            _iptables("-I", *jump[:1], "1", *jump[1:])


def remove(bridge: str, chain: str) -> None:
    """Remove the workspace's chain and its jumps; nothing when there are none."""
    for jump in jump_rules(bridge, chain):
        while _iptables("-D", *jump, check=False):
            pass
    if _iptables("-F", chain, check=False):
        _iptables("-X", chain, check=False)


def chain_exists(chain: str) -> bool:
    return _iptables("-S", chain, check=False)
