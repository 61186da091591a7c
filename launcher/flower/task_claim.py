"""A task the host has acquired, kept claimed while it waits for its message and a compute slot.

    with kept_claimed(client, token):     # a Runtime API client of the node (launcher.flower.warm_clientapp's)
        with slots.held(): ...            # may take longer than Flower's 30 s claim

Flower's SuperNode gives an acquired task 30 s (HEARTBEAT_DEFAULT_INTERVAL) to start: a task whose input is not
pulled by then goes back to pending and its token stops working, so the task, once it runs, gets 401 on every
call and the node fails the round ("Node Unavailable"). A task host that acquires a task and then waits for a
compute slot behind other clients' tasks (fifty clients of one-second tasks on two cores: the last waits ~25 s;
on a slower machine more) loses its claim that way. Flower's own task heartbeat (SendTaskHeartbeat with the
task's token) extends a starting task's claim as a running one's; this sends it every CLAIM_HEARTBEAT_S while the
host waits, on a thread, until the task itself runs (Flower's run_clientapp then heartbeats on its own).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

CLAIM_HEARTBEAT_S = 10.0  # well inside Flower's 30 s for a starting task (60 s once one heartbeat came)


@contextlib.contextmanager
def kept_claimed(client, token: str, every: float = CLAIM_HEARTBEAT_S) -> Iterator[None]:
    """Heartbeats for the task ``token`` names, through ``client``'s class and address, while the block runs."""
    from flwr.proto.runtime_pb2 import SendTaskHeartbeatRequest  # pylint: disable=E0611
    from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor

    done = threading.Event()

    def beat() -> None:
        if done.wait(every):  # most tasks start within the first interval: no client made for them
            return
        task_client = type(client).from_server_address(
            server_address=client._base_url.split("://", 1)[-1], insecure=True,  # noqa: SLF001 (pinned)
            root_certificates=None, interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec"),
                                                  RuntimeTokenHttpInterceptor(token)])
        try:
            while True:
                try:
                    task_client.SendTaskHeartbeat(SendTaskHeartbeatRequest())
                except Exception:  # noqa: BLE001 (a lost claim shows when the task runs, as Flower shows it)
                    return
                if done.wait(every):
                    return
        finally:
            task_client.close()

    thread = threading.Thread(target=beat, name="fl-launch-claim", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(5)
