"""OpenSSH as the transport to devices: the user's config, agent and keys, in batch mode.

    ssh = Ssh(device, config="~/.ssh/config")
    ssh.run(shlex.join(["python3", "-V"])).stdout
    # 'Python 3.11.7\\n'
    ssh.argv("-N", "-R", "127.0.0.1:0:127.0.0.1:9092")      # a tunnel, for Popen; the device picks its port
    allocated_port("Allocated port 40123 for remote forward to 127.0.0.1:9092\n")
    # 40123

Every remote command is one string built with shlex quoting from a list of
words; host, user and paths come validated from the hosts file. Host keys are
checked strictly: a device must already be in known_hosts.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import threading
from pathlib import Path
from typing import BinaryIO

from launcher.devices.hosts import Device

CONNECT_TIMEOUT = 10
# what OpenSSH's client prints on stderr for ``-R 0:...`` (the port its server bound)
ALLOCATED = re.compile(r"^Allocated port (\d+) for remote forward", re.MULTILINE)


def allocated_port(stderr_text: str) -> int | None:
    """The remote port OpenSSH says the device bound for a ``-R 0:...`` forward, or None (not yet)."""
    found = ALLOCATED.search(stderr_text)
    return int(found.group(1)) if found else None


class Ssh:
    def __init__(self, device: Device, config: str | None = None) -> None:
        self.device = device
        self.config = config

    def argv(self, *extra: str) -> list[str]:
        d = self.device
        args = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
                "-o", "StrictHostKeyChecking=yes", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if self.config:
            args += ["-F", str(Path(self.config).expanduser())]
        if d.port:
            args += ["-p", str(d.port)]
        if d.identity:
            args += ["-i", str(Path(d.identity).expanduser()), "-o", "IdentitiesOnly=yes"]
        if d.user:
            args += ["-l", d.user]
        return [*args, *extra, d.host]

    def run(self, command: str, stdin: bytes | BinaryIO | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        """Run one remote shell command; never raises for a failed connection (exit 255).
        ``stdin``: bytes, or an open file streamed from disk (large tar streams)."""
        feed = {"input": stdin} if stdin is None or isinstance(stdin, bytes) else {"stdin": stdin}
        try:
            return subprocess.run([*self.argv(), "--", command], capture_output=True, timeout=timeout, **feed)
        except subprocess.TimeoutExpired as err:
            return subprocess.CompletedProcess(err.cmd, 255, b"", f"ssh timed out after {timeout:.0f} s".encode())


class Session:
    """One ssh connection kept open to answer the same request again and again: a remote shell loop that, for
    each line it reads, runs ``command`` and replies with its output's size on a line, then the output.

    What a repeated ``Ssh.run`` costs the device each time (sshd's key exchange and session, the login
    shell's rc files: 0.12-0.15 CPU-s a call on the test devices, whose ~/.bashrc runs pyenv init; conda's
    init on a real device costs as much) is paid once. A session whose connection ended is started again
    at the next call."""

    def __init__(self, ssh: Ssh, setup: str, command: str, timeout: float = 120) -> None:
        self.ssh, self.timeout = ssh, timeout
        out = ".session.out"  # in the folder setup moves to; the command's whole output, then its size
        self.script = (f"{setup} || exit 3; while read -r _; do rm -f {out}; ( {command} ) > {out} 2>/dev/null; "
                       f"wc -c < {out}; cat {out}; done")
        self._proc: subprocess.Popen | None = None
        self.exit_code: int | None = None  # of the last connection that ended (255: ssh's own failure)

    def call(self) -> bytes | None:
        """The command's output, or None: the connection ended (``exit_code`` says how) or timed out."""
        if self._proc is None:
            self._proc = subprocess.Popen([*self.ssh.argv(), "--", self.script], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        proc = self._proc
        watchdog = threading.Timer(self.timeout, proc.kill)
        watchdog.start()
        try:
            proc.stdin.write(b"\n")
            proc.stdin.flush()
            size = proc.stdout.readline()
            data = proc.stdout.read(int(size)) if size.strip().isdigit() else None
        except (OSError, ValueError):
            data = None
        finally:
            watchdog.cancel()
        if data is None or proc.poll() is not None:
            self.close()
            return None
        self.exit_code = None
        return data

    def close(self) -> None:
        """End the connection (the remote loop ends with its input)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            self.exit_code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            self.exit_code = proc.wait()


def remote_path(path: str) -> str:
    """A path for the remote shell: quoted, with a leading ~/ (or a relative path) under $HOME."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    if not path.startswith("/"):
        return '"$HOME"/' + shlex.quote(path)
    return shlex.quote(path)


def last_line(data: bytes) -> str:
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
