"""Wake-ups between the processes of a run on one host, so none sleeps through a message.

    bell = WakeupSocket(client_dir, "supernode")   # in the SuperNode: bind its bell
    bell.wait(3.0)                            # sleeps up to 3 s, returns early when rung
    wake(client_dir, "supernode", SERVER_PUSHED)   # in the ServerApp, after pushing a round
    SERVER_PUSHED in bell.heard               # True from then on: this node's ServerApp rings

Flower's client side polls: an idle SuperNode asks the SuperLink for messages every
3 s and its task runner asks the SuperNode every so often. A bell is a Linux abstract
Unix datagram socket named after the client folder and the role, so the ServerApp
(after pushing messages) and the SuperNode (after pulling one) can cut those sleeps
short. A ring nobody hears is dropped: the sleeper's own timeout still bounds the
wait, so bells only ever make things faster, and only on the same host. A ring carries one
byte saying who rang; ``heard`` keeps the kinds a bell has heard, so a SuperNode knows once
its ServerApp rings after each push (the built-in app's does; a user's app does not).
"""

from __future__ import annotations

import hashlib
import select
import socket
from collections.abc import Collection
from pathlib import Path

SERVER_PUSHED = b"s"  # the ServerApp pushed messages for this node
RUNG = b"!"  # anyone else (a task ended, a message pulled)


def _address(client_dir: str | Path, role: str) -> bytes:
    key = hashlib.sha1(f"{Path(client_dir).resolve()}\0{role}".encode()).hexdigest()[:24]
    return b"\0fl-launch-bell-" + key.encode()


class WakeupSocket:
    def __init__(self, client_dir: str | Path, role: str) -> None:
        self.heard: set[bytes] = set()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind(_address(client_dir, role))
        except OSError:  # another process holds it (a restarted node's predecessor): plain sleeps
            self.sock.close()
            self.sock = None
        else:
            self.sock.setblocking(False)

    @property
    def bound(self) -> bool:
        return self.sock is not None

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True when rung (pending rings are all consumed)."""
        if self.sock is None:
            select.select([], [], [], timeout)
            return False
        readable, _, _ = select.select([self.sock], [], [], timeout)
        rung = False
        while readable:
            try:
                self.heard.add(self.sock.recv(16)[:1])
                rung = True
            except BlockingIOError:
                break
        return rung

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def wake(client_dir: str | Path, role: str, what: bytes = RUNG) -> None:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)  # a bell whose queue is full (its owner stopped, wedged) is not waited for
            sock.sendto(what, _address(client_dir, role))
    except OSError:  # nobody listening (not started yet, or on another host); no socket to be had
        pass


def wake_all(run_dir: str | Path, role: str, what: bytes = RUNG, skip: Collection[str] = ()) -> None:
    """Ring the bell of every client folder of a run (those on this host hear it), but those named in skip."""
    for client_dir in Path(run_dir).glob("client_*"):
        if client_dir.name not in skip:
            wake(client_dir, role, what)
