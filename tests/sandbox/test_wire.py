"""The typed wire between the host and the container server (pure logic, no Docker)."""

from __future__ import annotations

import pytest

from sandbox.container_server import wire


def test_a_request_round_trips_through_its_wire_form():
    request = wire.Exec(command="ls", env={"A": "1"}, timeout=5, max_output=100, stream=True)
    assert wire.parse_request(request.to_wire()) == request
    assert wire.parse_request({"op": "stat", "path": "a"}) == wire.Stat(path="a")


@pytest.mark.parametrize("header", [
    {"op": "nope"},
    {"path": "a"},
    {"op": "stat", "path": 3},
    {"op": "stat", "path": "a", "extra": 1},
    {"op": "stat"},
    {"op": "exec", "command": "ls", "timeout": "10", "max_output": 1},
    {"op": "exec", "command": "ls", "timeout": 1, "max_output": True},
    {"op": "exec", "command": "ls", "timeout": 1, "max_output": 1, "env": {"A": 1}},
])
def test_malformed_requests_are_refused_by_name(header):
    with pytest.raises(wire.WireError):
        wire.parse_request(header)


def test_replies_are_type_checked_field_by_field():
    ok = {"processes": [{"process_id": "p", "command": "c", "pid": 3, "status": "running", "exit_code": None,
                         "started_at": 1, "ended_at": None}]}
    reply = wire.parse_reply(wire.BgList(), ok)
    assert reply.processes[0].started_at == 1.0 and isinstance(reply.processes[0], wire.ProcessReply)
    with pytest.raises(wire.WireError):
        wire.parse_reply(wire.BgList(), {"processes": [{"process_id": "p"}]})
    with pytest.raises(wire.WireError):
        wire.parse_reply(wire.Stat(path="a"), {"path": "a", "type": "file", "size": "9", "mtime": 0})
