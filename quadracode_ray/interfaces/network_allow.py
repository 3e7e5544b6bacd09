"""A workspace's network access: off (``False``), on (``True``), or an allow-list.

An allow-list is a list of entries ``HOST[:PORTS]``:

- ``HOST``: a host name (``pypi.org``), an IPv4 address (``10.1.2.3``) or an IPv4 network in
  CIDR notation (``10.1.0.0/16``);
- ``PORTS``: one port (``443``) or a range (``8000-8099``); left out, every port.

``parse_allow_list`` checks and normalizes one (pure, no lookups): a bad entry is a
``ValueError`` whose message names it and says what is expected. Host names are resolved by
the host side when the workspace is created (sandbox/deployments/firewall.py), never inside.
"""

from __future__ import annotations

import ipaddress
import re

MAX_ENTRIES = 64
HOST_NAME = re.compile(r"^(?=.{1,253}$)([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?)*\.?$")
ENTRY_FORM = "HOST[:PORT] or HOST[:LOW-HIGH], HOST a host name, an IPv4 address or an IPv4 CIDR"

NetworkAccess = bool | list[str]
"""False: no network; True: Docker's default bridge; a list: only what it allows."""


def _ports(text: str, entry: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        first, last = int(low), int(high) if sep else int(low)
    except ValueError:
        raise ValueError(f"network allow-list entry {entry!r}: ports must be a number or LOW-HIGH, not {text!r}") from None
    if not (1 <= first <= last <= 65535) or not low.isdigit() or (sep and not high.isdigit()):
        raise ValueError(f"network allow-list entry {entry!r}: ports must be within 1-65535, low before high")
    return first, last


def parse_entry(entry: str) -> tuple[str, tuple[int, int]]:
    """``(host, (first_port, last_port))`` of one entry; the host as an IPv4 network
    (``10.0.0.1/32``) when it is an address or CIDR, else the lower-cased host name."""
    if not isinstance(entry, str) or not entry.strip():
        raise ValueError(f"network allow-list entry {entry!r} is empty or not a string; expected {ENTRY_FORM}")
    text = entry.strip()
    if text.count(":") > 1 or text.startswith("["):
        raise ValueError(f"network allow-list entry {entry!r}: IPv6 is not supported (workspace networks are IPv4 only)")
    host, sep, ports = text.partition(":")
    port_range = _ports(ports, entry) if sep else (1, 65535)
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        network = None
    if network is not None:
        if network.version != 4:
            raise ValueError(f"network allow-list entry {entry!r}: IPv6 is not supported")
        if network.prefixlen == 0:
            raise ValueError(f"network allow-list entry {entry!r}: 0.0.0.0/0 is every address; use network=true instead")
        return str(network), port_range
    if "/" in host or not HOST_NAME.fullmatch(host) or host.replace(".", "").isdigit():
        raise ValueError(f"network allow-list entry {entry!r}: {host!r} is not a host name, IPv4 address or CIDR; "
                         f"expected {ENTRY_FORM}")
    return host.lower().rstrip("."), port_range


def format_entry(host: str, ports: tuple[int, int]) -> str:
    if ports == (1, 65535):
        return host
    return f"{host}:{ports[0]}" if ports[0] == ports[1] else f"{host}:{ports[0]}-{ports[1]}"


def parse_allow_list(value: object) -> NetworkAccess:
    """``value`` checked: a bool as is, a list of entries normalized (``10.0.0.1`` becomes
    ``10.0.0.1/32``, duplicates dropped). An empty list is refused (say ``False``)."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, list | tuple):
        raise ValueError(f"network must be false, true or a list of {ENTRY_FORM} (got {type(value).__name__})")
    if not value:
        raise ValueError("network allow-list is empty; use network=false for no network")
    if len(value) > MAX_ENTRIES:
        raise ValueError(f"network allow-list has {len(value)} entries; at most {MAX_ENTRIES}")
    normalized: list[str] = []
    for entry in value:
        text = format_entry(*parse_entry(entry))
        if text not in normalized:
            normalized.append(text)
    return normalized
