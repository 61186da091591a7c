"""Test "devices": each its own network, PID and mount namespace with its own sshd, keys and work root.

    with make_devices(tmp_path, 2) as lab:
        lab.hosts_file(slots=2)          # a devices.toml naming dev0, dev1
        lab.ssh_config                   # -F file: aliases, key, known_hosts, strict checking
        lab.devices[0].ssh("ps -e")      # what runs there, seen from there
        with cpu_group("held", lab.devices[0].tree(), 30000):      # the device held to 0.3 core
            with lab.devices[0].shaped("4mbit", "2mbit"):           # tc tbf each way on its veth pair
                config = lab.delayed_config(tmp_path, {"dev0": 0.04})  # 40 ms each way in a relay

Traffic goes only to the namespaces' own addresses (10.231.x.2) and to loopback.
A device's processes are invisible to the launcher's PID namespace checks, so
only SSH can find or stop them; stopping the namespace's init ends them all.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

CPU_ROOT = Path("/sys/fs/cgroup/cpu")
# a hosts file's [defaults] line: the devices' agents (and --bench's probes) run this checkout's code, as here
THIS_CHECKOUT = f'env = {{ PYTHONPATH = "{Path(__file__).resolve().parents[1]}" }}'


def available() -> str | None:
    """Why devices cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("ip", "unshare", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/usr/sbin/sshd").exists():
        return "openssh-server is not installed"
    return None


def _sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def veth_namespace(ns: str, host_if: str, ns_if: str, net: str) -> None:
    """A network namespace ``ns`` joined to this one by a veth pair: ``net``.1 on this side, ``net``.2 in it."""
    _sh("ip", "netns", "add", ns)
    _sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
    _sh("ip", "link", "set", ns_if, "netns", ns)
    _sh("ip", "addr", "add", f"{net}.1/24", "dev", host_if)
    _sh("ip", "link", "set", host_if, "up")
    _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{net}.2/24", "dev", ns_if)
    _sh("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up")
    _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")


@dataclass
class Device:
    name: str
    namespace: str
    address: str
    root: Path
    sshd: subprocess.Popen
    lab: "Lab"
    interface: str = ""

    def link(self, up: bool) -> None:
        """Cut the device off its network, or plug it back in."""
        _sh("ip", "netns", "exec", self.namespace, "ip", "link", "set", self.interface, "up" if up else "down")

    def tree(self) -> list[int]:
        """The device's sshd (the namespace's init: unshare's child) and all it started, as this machine sees them."""
        proc = psutil.Process(self.sshd.pid)
        return [proc.pid] + [p.pid for p in proc.children(recursive=True)]

    @contextmanager
    def shaped(self, down: str | None, up: str | None):
        """The device's link held by a token bucket (tc tbf, a qdisc this kernel has) each way: ``down`` what
        leaves this machine's end of the veth pair for the device, ``up`` what leaves the device's end."""
        host_side = "fh" + self.interface[2:]  # make_devices names the pair fh<tag>x<i> / fd<tag>x<i>
        shapes = [(prefix, interface, rate) for prefix, interface, rate in
                  (([], host_side, down), (["ip", "netns", "exec", self.namespace], self.interface, up)) if rate]
        try:
            for prefix, interface, rate in shapes:  # a qdisc shapes what leaves the interface
                _sh(*prefix, "tc", "qdisc", "add", "dev", interface, "root", "tbf", "rate", rate,
                    "burst", "32kbit", "latency", "400ms")
            yield
        finally:
            for prefix, interface, _ in shapes:
                subprocess.run([*prefix, "tc", "qdisc", "del", "dev", interface, "root"], capture_output=True)

    def ssh(self, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", "-F", str(self.lab.ssh_config), self.name, "--", command],
                              capture_output=True, text=True, timeout=timeout)

    def tagged_pids(self, tag: str) -> list[int]:
        """PIDs in the device's own namespace whose environment carries FL_LAUNCH_TAG=tag exactly."""
        script = ("import os\nfor p in os.listdir('/proc'):\n if p.isdigit():\n  try:\n"
                  "   e=open(f'/proc/{p}/environ','rb').read().split(b'\\0')\n"
                  "   s=open(f'/proc/{p}/stat').read().rsplit(')',1)[1].split()[0]\n"
                  f"   print(p) if b'FL_LAUNCH_TAG={tag}' in e and s!='Z' else None\n"
                  "  except OSError: pass\n")
        out = self.ssh(f"{sys.executable} -c {_quote(script)}")
        return [int(x) for x in out.stdout.split()]


def _quote(text: str) -> str:
    return shlex.quote(text)


@contextmanager
def cpu_group(name: str, pids: list[int], quota_us: int | None):
    """A cgroup v1 cpu group holding pids (their children follow), removed after with everything moved out.
    Its weight is the highest (cpu.shares 262144): what other sessions run on this machine's two cores
    takes from it only what its quota leaves, so the device it holds keeps a whole core otherwise."""
    group = CPU_ROOT / f"fl-device-test-{os.getpid()}-{name}"
    group.mkdir()
    try:
        (group / "cpu.shares").write_text("262144")
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text(str(quota_us or -1))
        for pid in pids:
            try:
                (group / "cgroup.procs").write_text(str(pid))
            except ProcessLookupError:  # it exited after it was listed (an ssh session closing)
                continue
        yield group
    finally:
        deadline = time.monotonic() + 10
        while True:
            for pid in (group / "cgroup.procs").read_text().split():
                try:
                    (CPU_ROOT / "cgroup.procs").write_text(pid)
                except OSError:
                    pass
            try:
                group.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


# A ProxyCommand that holds every chunk ``delay`` seconds each way (this kernel has no netem): a pipe, not
# stop-and-wait. argv: HOST PORT DELAY.
RELAY = r"""
import os, queue, socket, sys, threading, time
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
delay = float(sys.argv[3])
def pump(read, write, done):
    due = queue.Queue()
    def later():
        while (item := due.get()) is not None:
            time.sleep(max(0.0, item[0] - time.monotonic()))
            write(item[1])
        done()
    writer = threading.Thread(target=later)
    writer.start()
    while data := read():
        due.put((time.monotonic() + delay, data))
    due.put(None)
    return writer
up = threading.Thread(target=pump, args=(lambda: os.read(0, 65536), sock.sendall,
                                         lambda: sock.shutdown(socket.SHUT_WR)))
up.start()
pump(lambda: sock.recv(65536), lambda data: os.write(1, data), lambda: None).join()
os._exit(0)
"""


@dataclass
class Lab:
    folder: Path
    ssh_config: Path
    devices: list[Device]

    def delayed_config(self, folder: Path, delays: dict[str, float]) -> Path:
        """An ssh config whose named devices go through a relay holding every chunk DELAY s each way, so all
        that travels over SSH (the run's tunnel too) is delayed as on a link with that one-way latency."""
        relay = Path(folder) / "relay.py"
        relay.write_text(RELAY)
        text = self.ssh_config.read_text()
        for device in self.devices:
            if device.name in delays:
                proxy = f"  ProxyCommand {sys.executable} {relay} {device.address} 22 {delays[device.name]}\n"
                text = text.replace(f"Host {device.name}\n", f"Host {device.name}\n{proxy}")
        config = Path(folder) / "ssh_config_delayed"
        config.write_text(text)
        return config

    def hosts_file(self, slots: int = 1, extra: str = "") -> Path:
        path = self.folder / "devices.toml"
        body = f'[defaults]\npython = "{sys.executable}"\n{extra}\n'
        for d in self.devices:
            body += f'\n[[device]]\nhost = "{d.name}"\nslots = {slots}\nworkdir = "{d.root}"\n'
        path.write_text(body)
        return path


@contextmanager
def make_devices(folder: Path, count: int, first_octet: int | None = None):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keys = folder / "keys"
    keys.mkdir()
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "client"))
    Path("/run/sshd").mkdir(exist_ok=True)
    base = first_octet if first_octet is not None else 100 + os.getpid() % 100
    tag = f"{os.getpid() % 10000}"
    devices: list[Device] = []
    config_lines = []
    known_hosts = keys / "known_hosts"
    known_hosts.write_text("")
    lab = Lab(folder, folder / "ssh_config", devices)
    try:
        for i in range(count):
            name, ns = f"dev{i}", f"fl-{tag}-{i}"
            host_if, dev_if = f"fh{tag}x{i}", f"fd{tag}x{i}"
            net = f"10.231.{(base + i) % 250}"
            root = folder / f"{name}-root"
            root.mkdir()
            veth_namespace(ns, host_if, dev_if, net)
            hostkey = keys / f"{name}_host"
            _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey))
            (keys / f"{name}_authorized").write_text((keys / "client.pub").read_text())
            sshd_config = folder / f"{name}_sshd_config"
            sshd_config.write_text(
                f"ListenAddress {net}.2:22\nHostKey {hostkey}\nPidFile {folder / f'{name}_sshd.pid'}\n"
                f"AuthorizedKeysFile {keys / f'{name}_authorized'}\nUsePAM no\nStrictModes no\n"
                "PermitRootLogin yes\nPasswordAuthentication no\nAllowTcpForwarding yes\n"
                "ClientAliveInterval 5\nClientAliveCountMax 3\n"
            )
            sshd = subprocess.Popen(
                ["ip", "netns", "exec", ns, "unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                 "/usr/sbin/sshd", "-D", "-e", "-f", str(sshd_config)],
                stdout=open(folder / f"{name}_sshd.log", "wb"), stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            with open(known_hosts, "a") as fh:
                fh.write(f"{net}.2 {' '.join((hostkey.with_suffix('.pub')).read_text().split()[:2])}\n")
            config_lines.append(
                f"Host {name}\n  HostName {net}.2\n  User root\n  IdentityFile {keys / 'client'}\n"
                f"  IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n  StrictHostKeyChecking yes\n"
            )
            devices.append(Device(name, ns, f"{net}.2", root, sshd, lab, dev_if))
        lab.ssh_config.write_text("\n".join(config_lines))
        for device in devices:
            deadline = time.monotonic() + 15
            while device.ssh("true", timeout=10).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd on {device.name} did not come up: "
                                       f"{(folder / f'{device.name}_sshd.log').read_text()[-500:]}")
                time.sleep(0.2)
        yield lab
    finally:
        for device in devices:
            device.sshd.terminate()  # unshare --kill-child ends the namespace's init, and with it everything
            try:
                device.sshd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                device.sshd.kill()
                device.sshd.wait()
        for i in range(count):
            subprocess.run(["ip", "netns", "del", f"fl-{tag}-{i}"], capture_output=True)
            subprocess.run(["ip", "link", "del", f"fh{tag}x{i}"], capture_output=True)
