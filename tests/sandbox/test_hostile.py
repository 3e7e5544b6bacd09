"""A hostile workspace, against the real Docker engine: check-then-use races on the file API,
attacks on the container server (signals, tracing, its memory, its socket, impersonation), pids
exhaustion, processes that detach from their exec, and a hung server. Each attack is run as a
workspace command would run it; races are tried many times, bounded by a deadline."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time

import pytest

from quadracode_ray.interfaces.workspace import WorkspaceError, WorkspaceUnavailable
from sandbox.container_server import wire
from sandbox.deployments.docker import (
    LABEL_INSTALLATION,
    LABEL_WORKSPACE,
    DockerDeployment,
    DockerDeploymentConfig,
)
from sandbox.service import WorkspaceService
from tests.polling import eventually

OUTSIDE = "/opt/outside"
SECRET = "outside-secret-5f2c"
SWAPPER = f"""
import os, shutil
os.chdir('/workspace')
while True:
    try:
        os.unlink('d')
    except IsADirectoryError:
        shutil.rmtree('d', ignore_errors=True)
    except FileNotFoundError:
        pass
    try:
        os.mkdir('d')
    except FileExistsError:
        pass
    try:
        shutil.rmtree('d')
    except (FileNotFoundError, NotADirectoryError):
        pass
    try:
        os.symlink('{OUTSIDE}', 'd')
    except FileExistsError:
        pass
"""


@pytest.fixture(scope="module")
async def service(sandbox_settings):
    settings = sandbox_settings()
    service = WorkspaceService(DockerDeployment("hostile", DockerDeploymentConfig.from_settings(settings)), settings)
    await service.ensure()
    yield service
    await service.destroy(remove_volume=True)
    service.close()


@pytest.fixture(scope="module")
def container(service, docker_client):
    return docker_client.containers.list(filters={"label": [
        f"{LABEL_WORKSPACE}=hostile", f"{LABEL_INSTALLATION}={service.settings.sandbox_installation_id}"]})[0]


def as_root(container, command: str) -> str:
    """A command as root in the container: how the test looks behind the workspace's back."""
    code, out = container.exec_run(["sh", "-c", command], user="0:0")
    return out.decode()


async def server_pid(service) -> int:
    return (await service.runtime.call(wire.Ping())).pid


def tar_with(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def test_file_operations_never_land_outside_while_a_dir_and_a_symlink_swap(service, container):
    as_root(container, f"mkdir -p {OUTSIDE} && echo {SECRET} > {OUTSIDE}/victim && chmod 755 {OUTSIDE}")
    await service.write_file("src.txt", b"payload")
    await service.mkdir("srcdir/inner")
    await service.write_file("srcdir/inner/f", b"payload")
    await service.write_file("d-snap/f", b"snap")
    snap = await service.snapshot("race")
    swapper = await service.start_process(f"python3 -c \"{SWAPPER}\"")
    operations = {
        "write": lambda i: service.write_file(f"d/w{i}", b"payload"),
        "mkdir": lambda i: service.mkdir(f"d/m{i}"),
        "copy": lambda i: service.copy("src.txt", f"d/c{i}"),
        "copy_dir": lambda i: service.copy("srcdir", f"d/cd{i}"),
        "move": lambda i: _move(service, i),
        "delete": lambda i: service.delete("d/victim"),
        "upload": lambda i: service.upload_tar(tar_with(f"d/t{i}", b"payload")),
        "read": lambda i: service.read_file("d/victim"),
    }
    tries = {name: 0 for name in operations}
    leaks: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and min(tries.values()) < 200:
            for name, operation in operations.items():
                tries[name] += 1
                try:
                    result = await operation(tries[name])
                except WorkspaceError:
                    continue  # refused or failed: fine, as long as nothing happened outside
                if name == "read" and SECRET.encode() in result:
                    leaks.append("read returned the file outside")
        for _ in range(5):
            try:
                await service.restore_snapshot(snap.snapshot_id)
            except WorkspaceError:
                pass
    finally:
        await service.kill_process(swapper.process_id)
    outside = as_root(container, f"ls -A {OUTSIDE}; cat {OUTSIDE}/victim").split()
    assert outside == ["victim", SECRET], (outside, tries)
    assert not leaks
    assert min(tries.values()) >= 50, tries  # the race was really tried, not starved
    # Snapshots taken while the swap runs never pick up what is outside.
    assert SECRET.encode() not in await service.download_tar(["."])


async def _move(service, i: int):
    await service.write_file(f"mv{i}", b"payload")
    return await service.move(f"mv{i}", f"d/mv{i}")


async def test_commands_run_as_the_sandbox_user_and_cannot_touch_the_server(service, container):
    pid = await server_pid(service)
    assert (await service.exec("id -u")).stdout.strip() == "1000"
    assert as_root(container, f"awk '/^Uid:/ {{print $2}}' /proc/{pid}/status").strip() == "0"
    for attack in (f"kill -STOP {pid}", f"kill -9 {pid}", f"cat /proc/{pid}/environ", f"head -c 1 /proc/{pid}/mem",
                   "rm -f /run/quadracode/exec.sock", "mkdir /run/quadracode/exec.sock.d",
                   "ln -sf /tmp/x /run/quadracode/exec.sock", "echo x > /opt/quadracode/container_server/server.py"):
        result = await service.exec(attack)
        assert result.exit_code != 0, (attack, result)
    trace = ("python3 -c \"import ctypes; libc = ctypes.CDLL(None, use_errno=True); "
             f"print(libc.ptrace(16, {pid}, 0, 0), ctypes.get_errno())\"")  # PTRACE_ATTACH
    assert (await service.exec(trace)).stdout.split()[0] == "-1"
    connect = ("python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); "
               "s.connect('/run/quadracode/exec.sock')\"")
    assert "Permission denied" in (await service.exec(connect)).stderr
    assert await server_pid(service) == pid  # the same server, never stopped or replaced
    assert as_root(container, f"grep ^State: /proc/{pid}/status").split()[1] in ("S", "R")


async def test_a_forged_server_on_the_socket_is_refused(service, container):
    # Worst case: something replaced the socket (only root in the container could). It answers
    # the handshake without the secret of this start, so the host refuses it and sends nothing.
    forged = ("import os, socket, json, struct\n"
              "s = socket.socket(socket.AF_UNIX); s.bind('/run/quadracode/forged.sock'); s.listen(8)\n"
              "os.chmod('/run/quadracode/forged.sock', 0o666)\n"
              "os.replace('/run/quadracode/forged.sock', '/run/quadracode/exec.sock')\n"
              "while True:\n"
              "    c, _ = s.accept(); c.recv(65536)\n"
              "    raw = json.dumps({'ok': True, 'nonce': 'n', 'proof': '0' * 64}).encode()\n"
              "    c.sendall(struct.pack('>IQ', len(raw), 0) + raw)\n")
    socket_path = service.deployment.socket_path
    real = socket_path.lstat().st_ino
    container.exec_run(["python3", "-c", forged], user="0:0", detach=True)
    await eventually(lambda: _replaced(socket_path, real), what="the forged socket in place")
    service.runtime.close()
    with pytest.raises(WorkspaceUnavailable, match="could not prove"):
        await service.runtime.call(wire.Ping())
    await asyncio.to_thread(service.deployment.launch_server)  # the real one, with a new secret
    service.runtime.close()
    assert (await service.exec("echo back")).stdout == "back\n"


async def _replaced(socket_path, inode: int) -> bool:
    try:
        return socket_path.lstat().st_ino != inode
    except FileNotFoundError:
        return False


async def test_the_server_survives_pids_exhaustion_and_kills_the_bomb(service):
    pid = await server_pid(service)
    bomb = asyncio.ensure_future(service.exec(":(){ :|:& };:", timeout=5))
    # While the bomb holds every pid, the server still answers (threads were started ahead);
    # a command that cannot start is a typed error naming the cause.
    await asyncio.sleep(0)
    for _ in range(3):
        try:
            await service.exec("true", timeout=5)
        except WorkspaceUnavailable as exc:
            assert "pids limit" in str(exc)
        assert await server_pid(service) == pid
    result = await bomb
    assert result.timed_out or result.exit_code is not None
    left = await service.exec("ps -e -o uid= | grep -cE '^ *1000$' || true")
    assert 1 <= int(left.stdout) <= 3  # ps, grep and their shell: the bomb is gone
    assert await server_pid(service) == pid
    assert (await service.exec("echo alive")).stdout == "alive\n"


async def test_no_process_outlives_its_exec_whatever_it_did_to_detach(service):
    job = await service.start_process("exec -a qr-kept-job sleep 300")
    detach = ("setsid sleep 301 >/dev/null 2>&1 < /dev/null & "
              "( (exec -a qr-double-fork sleep 302 >/dev/null 2>&1 < /dev/null &) & ) ; "
              "nohup setsid bash -c 'exec -a qr-nohup sleep 303' >/dev/null 2>&1 < /dev/null & "
              "python3 -c \"import os, time\nif os.fork() == 0:\n os.setsid()\n if os.fork() == 0:\n"
              "  os.closerange(0, 3); time.sleep(304)\" ; echo started")
    assert (await service.exec(detach, timeout=20)).stdout.strip() == "started"
    survivors = (await service.exec("ps -eo uid=,args= | grep -E '^ *1000 '")).stdout.splitlines()
    assert not [line for line in survivors if "python3" in line or " 30" in line and "qr-kept-job" not in line], survivors
    assert any("qr-kept-job 300" in line for line in survivors)  # a background job is registered: it stays
    await service.kill_process(job.process_id)


async def test_a_stopped_server_is_detected_in_seconds_killed_and_restarted(service, container):
    pid = await server_pid(service)
    as_root(container, f"kill -STOP {pid}")  # as a frozen or wedged server would look
    started = time.monotonic()
    with pytest.raises(WorkspaceUnavailable, match="stopped answering.*restarted"):
        await service.exec("echo hi", timeout=60)
    assert time.monotonic() - started < 20  # not the exec's 60 s, not 300 s
    assert (await service.exec("echo again")).stdout == "again\n"
    assert await server_pid(service) != pid
