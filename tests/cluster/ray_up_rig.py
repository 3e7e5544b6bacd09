"""What test_ray_up.py needs to run the real `ray up cluster.yaml` on one machine, safely.

- A private sshd on loopback only (127.0.0.1 and 127.0.0.2, a free port, a host key and a client
  key made for the test). The cluster launcher has no ssh port option, so ssh reaches it through
  a ProxyCommand (``proxy.py``). Every ssh session runs with HOME set to the rig's own home, so
  the launcher's files (~/ray_bootstrap_config.yaml, its key) never land in the real home.
- The cluster file generated from the shipped cluster.yaml: the rig's addresses, ports that are
  not Ray's defaults, the worktree as the synced folder, a temp dir per node, and never
  `ray stop` (it kills every Ray process of the machine, other people's included). `ray down`
  itself runs `ray stop` on the head: in the rig's sessions `ray` on PATH is ``bin/ray``, which
  stops only the processes of this cluster (those whose command line names its temp dir).
  The generated `ray start` commands use that same ``bin/ray``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "cluster.yaml"
HEAD_IP, WORKER_IP = "127.0.0.1", "127.0.0.2"

PROXY = """\
import os, socket, sys, threading
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def upstream():
    while data := os.read(0, 65536):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
threading.Thread(target=upstream, daemon=True).start()
while data := conn.recv(65536):
    os.write(1, data)
"""

RAY_WRAPPER = """\
#!/bin/bash
# `ray stop` for this rig's cluster only; anything else is the real ray, patient with a loaded
# machine (tests/cluster/patient_ray.py). A `ray start` that fails (Ray 2.60's raylet gives its
# agents a fixed 15 s, which a loaded machine can exceed) is stopped by its temp dir and made again.
if [ "$1" = stop ]; then
  cd {repo} && exec {python} -m tests.cluster.ray_up_rig stop-processes {marker}
fi
if [ "$1" != start ]; then
  PYTHONPATH={repo} exec {python} -m tests.cluster.patient_ray "$@"
fi
temp_dir=$(printf '%s\\n' "$@" | sed -n 's/^--temp-dir=//p')
for attempt in 1 2 3 4; do
  PYTHONPATH={repo} {python} -m tests.cluster.patient_ray "$@" && exit 0
  (cd {repo} && {python} -m tests.cluster.ray_up_rig stop-processes "$temp_dir")
done
exit 1
"""


def machine_ip() -> str:
    """The head's Ray node address: Ray turns 127.0.0.1 into the machine's own address."""
    from ray._private.services import get_node_ip_address

    return get_node_ip_address()


def processes_of(marker: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if any(marker in part for part in cmdline):
            found.append(process)
    return found


def stop_processes(marker: str, grace_s: float = 10.0) -> int:
    """SIGTERM, then SIGKILL, every process whose command line names ``marker``, but never the
    caller or its ancestors (the rig's `ray start` wrapper names the temp dir too, and stops a
    failed start this way before it tries again), nor ssh."""
    spared = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    # Nor the ssh sessions carrying the command (on one machine the head's ssh client and its
    # proxy name the worker's temp dir too; killing them failed the whole `ray start` command).
    victims = [p for p in processes_of(marker) if p.pid not in spared and p.name() not in ("ssh", "sshd")
               and "proxy.py" not in " ".join(p.cmdline())]
    for process in victims:
        try:
            process.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(victims, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    return len(victims)


@dataclass
class Rig:
    root: Path
    ssh_port: int = field(default_factory=free_port)
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    postgres_port: int = field(default_factory=free_port)
    prometheus_port: int = field(default_factory=free_port)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    sshd: subprocess.Popen | None = None
    prometheus: subprocess.Popen | None = None

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def marker(self) -> str:
        """In the command line of every Ray process of this cluster (its temp dirs)."""
        return str(self.root / "ray")

    @property
    def key(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def installation_id(self) -> str:
        return f"rayup{self.tag}"

    @property
    def cluster_file(self) -> Path:
        return self.root / "cluster.yaml"

    def env(self) -> dict[str, str]:
        """For `ray up` / `ray down` run by the test: the rig's home, nothing of the developer's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUADRACODE_", "RAY_"))}
        env.update(HOME=str(self.home), RAY_USAGE_STATS_ENABLED="0",
                   PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
        return env

    # --- sshd -------------------------------------------------------------------------------
    def start_sshd(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.home / ".ssh").mkdir(parents=True, exist_ok=True)
        (self.root / "bin").mkdir(exist_ok=True)
        for path in (self.root / "host_key", self.key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        (self.root / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        (self.root / "proxy.py").write_text(PROXY)
        session = self.root / "session.sh"
        session.write_text(textwrap.dedent(f"""\
            #!/bin/bash
            export HOME={self.home}
            cd "$HOME"
            if [ -z "$SSH_ORIGINAL_COMMAND" ]; then exec /bin/bash --login; fi
            exec /bin/bash -c "$SSH_ORIGINAL_COMMAND"
            """))
        session.chmod(0o755)
        ray_bin = self.root / "bin" / "ray"
        ray_bin.write_text(RAY_WRAPPER.format(python=sys.executable, repo=REPO, marker=self.marker))
        ray_bin.chmod(0o755)
        # The head's autoscaler reaches the worker with plain `ssh` (Ray drops ssh_proxy_command from
        # the head's copy of the config): on the rig's PATH, ssh goes through the proxy to its port.
        ssh_bin = self.root / "bin" / "ssh"
        # ssh expands ~ with the passwd home, not $HOME: name the head's copy of the key in the rig's.
        ssh_bin.write_text(f"#!/bin/bash\nexec /usr/bin/ssh -i {self.home / 'ray_bootstrap_key.pem'} "
                           f"-o 'ProxyCommand={sys.executable} {self.root / 'proxy.py'} %h {self.ssh_port}' \"$@\"\n")
        ssh_bin.chmod(0o755)
        (self.home / ".bashrc").write_text(f"export PATH={self.root / 'bin'}:$PATH\n")
        (self.home / ".bash_profile").write_text("source ~/.bashrc\n")
        config = self.root / "sshd_config"
        config.write_text(textwrap.dedent(f"""\
            Port {self.ssh_port}
            ListenAddress {HEAD_IP}
            ListenAddress {WORKER_IP}
            HostKey {self.root / 'host_key'}
            PidFile {self.root / 'sshd.pid'}
            AuthorizedKeysFile {self.root / 'authorized_keys'}
            PermitRootLogin prohibit-password
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            UsePAM no
            StrictModes no
            ForceCommand {session}
            """))
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        self.sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                                     stdout=open(self.root / "sshd.log", "wb"), stderr=subprocess.STDOUT)

    def ssh(self, host: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "IdentitiesOnly=yes", "-o", f"ProxyCommand={sys.executable} {self.root / 'proxy.py'} %h {self.ssh_port}",
             f"root@{host}", command], capture_output=True, text=True, timeout=timeout, env=self.env())

    # --- the generated cluster file ---------------------------------------------------------
    def write_cluster_file(self) -> dict:
        config = yaml.safe_load(SHIPPED.read_text())
        quadracode_env = " ".join(f"{k}='{v}'" for k, v in self.quadracode_env().items())

        def adapt(command: str, node: str, ip: str) -> str | None:
            command = command.replace("~/quadracode-ray", str(REPO))
            if re.search(r"\bray stop\b", command):
                return None  # never: it stops every Ray of the machine (the nodes are fresh anyway)
            command = command.replace("6379", str(self.gcs_port)).replace("8265", str(self.dashboard_port))
            command = command.replace("QUADRACODE_HTTP_PORT=8000", f"QUADRACODE_HTTP_PORT={self.http_port}")
            command = command.replace("QUADRACODE_HTTP_HOST=0.0.0.0", f"QUADRACODE_HTTP_HOST={HEAD_IP}")
            command = command.replace("--dashboard-host=0.0.0.0", f"--dashboard-host={HEAD_IP}")
            command = command.replace("RAY_PROMETHEUS_HOST=http://127.0.0.1:9090",
                                      f"RAY_PROMETHEUS_HOST=http://{HEAD_IP}:{self.prometheus_port}")
            command = command.replace("QUADRACODE_RAY_ADDRESS=127.0.0.1", f"QUADRACODE_RAY_ADDRESS={HEAD_IP}")
            command = command.replace(f"{REPO}/.venv/bin/ray start", f"{self.root / 'bin' / 'ray'} start")
            if "/ray start" in command:
                command += (f" --node-ip-address={ip} --temp-dir={self.marker}/{node} --num-cpus=2"
                            f" --dashboard-agent-listen-port={free_port()} --dashboard-agent-grpc-port={free_port()}"
                            f" --metrics-export-port={free_port()} --runtime-env-agent-port={free_port()}")
                if "--head" in command:
                    command += f" --ray-client-server-port={free_port()}"
            if "quadracode-ray up" in command:
                command = command.replace("cd ", f"export {quadracode_env} && cd ", 1)
            elif "quadracode-ray ingress-env" in command:  # as a line of the synced .env would (README)
                ingress = self.quadracode_env()["QUADRACODE_SERVE_INGRESS"]
                command = command.replace("ingress=$(", f"ingress=$(QUADRACODE_SERVE_INGRESS={ingress} ", 1)
            return command

        def adapt_all(commands: list[str], node: str, ip: str) -> list[str]:
            return [c for c in (adapt(c, node, ip) for c in commands) if c is not None]

        config.update(
            cluster_name=f"qr-rayup-{self.tag}",
            provider={"type": "local", "head_ip": HEAD_IP, "worker_ips": [WORKER_IP]},
            auth={"ssh_user": "root", "ssh_private_key": str(self.key),
                  "ssh_proxy_command": f"{sys.executable} {self.root / 'proxy.py'} %h {self.ssh_port}"},
            file_mounts={str(REPO): str(REPO)},  # the worktree onto itself: its .venv is already there
            head_start_ray_commands=adapt_all(config["head_start_ray_commands"], "head", HEAD_IP),
            worker_start_ray_commands=adapt_all(config["worker_start_ray_commands"], "worker", WORKER_IP),
            setup_commands=adapt_all(config["setup_commands"], "", ""),
            head_setup_commands=adapt_all(config["head_setup_commands"], "", ""),
            worker_setup_commands=adapt_all(config["worker_setup_commands"], "", ""),
        )
        self.cluster_file.write_text(yaml.safe_dump(config, sort_keys=False))
        return config

    def quadracode_env(self) -> dict[str, str]:
        return {
            "QUADRACODE_DATA_DIR": str(self.data_dir), "QUADRACODE_CLUSTER_POSTGRES_PORT": str(self.postgres_port),
            "QUADRACODE_CLUSTER_POSTGRES_LISTEN": f"{HEAD_IP},{machine_ip()}", "QUADRACODE_SANDBOX_INSTALLATION_ID": self.installation_id,
            "QUADRACODE_SERVE_PROXY_LOCATION": "HeadOnly",  # both nodes' proxies would want one port here
            "QUADRACODE_MODEL": "scripted:default", "QUADRACODE_SANDBOX_MEMORY_MB": "512",
            "QUADRACODE_SANDBOX_IDLE_STOP_S": "0", "QUADRACODE_FABRIC_RESOURCES": '{"fabric": 0.01}',
            # Named, not left to the default: the test checks cluster.yaml hands it to every node's Ray.
            "QUADRACODE_SERVE_INGRESS": "haproxy",
        }

    def write_serve_config(self, database_url: str) -> Path:
        """The shipped serve_config.yaml with this rig's database, port and settings."""
        config = yaml.safe_load((REPO / "serve_config.yaml").read_text())
        config["proxy_location"] = "HeadOnly"
        config["http_options"] = {"host": HEAD_IP, "port": self.http_port}
        (app,) = config["applications"]
        path = self.root / "serve_config.yaml"
        app["runtime_env"]["env_vars"].update(self.quadracode_env(), QUADRACODE_DATABASE_URL=database_url,
                                             SERVE_CONFIG_MARK=path.name)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start_prometheus(self) -> str:
        """Debian's Prometheus with the shipped observability/prometheus.yml, reading this
        cluster's service-discovery file (its head's temp dir is not /tmp/ray); returns its URL."""
        config = yaml.safe_load((REPO / "observability" / "prometheus.yml").read_text())
        config["global"]["scrape_interval"] = "2s"
        (job,) = config["scrape_configs"]
        job["file_sd_configs"][0]["files"] = [
            f"{self.marker}/head/prom_metrics_service_discovery.json" if f.startswith("/tmp/ray/") else f
            for f in job["file_sd_configs"][0]["files"]]
        path = self.root / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        port = self.prometheus_port  # where the head's dashboard reads it (RAY_PROMETHEUS_HOST)
        self.prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={path}", f"--storage.tsdb.path={self.root / 'prometheus'}",
             f"--web.listen-address={HEAD_IP}:{port}"],
            stdout=open(self.root / "prometheus.log", "wb"), stderr=subprocess.STDOUT)
        return f"http://{HEAD_IP}:{port}"

    def ray_cli(self, *args: str, timeout: float = 1200, serve: bool = False) -> subprocess.CompletedProcess:
        command = Path(sys.executable).with_name("serve" if serve else "ray")
        return subprocess.run([str(command), *args], capture_output=True, text=True, timeout=timeout,
                              env=self.env(), cwd=REPO)

    def auth_headers(self) -> dict[str, str]:
        token = self.home / ".ray" / "auth_token"
        return {"Authorization": f"Bearer {token.read_text().strip()}"} if token.exists() else {}

    def teardown(self) -> None:
        # This cluster's Ray, then ssh's control masters and their proxies (they outlive `ray up`).
        for marker in (self.marker, str(self.key), str(self.root / "proxy.py")):
            stop_processes(marker)
        for state in Path("/tmp/ray").glob(f"cluster-qr-rayup-{self.tag}.*"):  # the local provider's node list
            state.unlink(missing_ok=True)
        for server in (self.sshd, self.prometheus):
            if server is not None:
                server.terminate()
                try:
                    server.wait(10)
                except subprocess.TimeoutExpired:
                    server.kill()


def wait_until(probe, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)  # polling a separate cluster's HTTP API, with a deadline
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "stop-processes":
    marker = sys.argv[2]
    if not marker.startswith("/tmp/") or len(marker) < 12:
        sys.exit(f"refusing to stop processes by a marker this broad: {marker!r}")
    print(f"stopped {stop_processes(marker)} processes of {marker}")
