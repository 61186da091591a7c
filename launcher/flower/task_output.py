"""The task's last call to its SuperNode, retried on a fresh connection like the others.

    install()   # in a task's process, before Flower's run_clientapp runs

Flower 1.41's run_clientapp pushes the task's output (its status and the node's context) in an
exit handler that first cuts its client's retries to one try ("avoid blocking on exit"), so that
call alone does not survive the SuperNode closing the connection it reuses (a keep-alive timeout
meeting the request; on a device, a dropped link): the error is logged and the node's context of
that round is lost. Every other call of the task and of its host goes through Flower's retry
invoker. This puts, in run_clientapp's module namespace (Flower's files are not touched), a
push_task_output that tries again at once on a fresh connection when the error is one a stale
connection gives, a few times, and then does what Flower's does (logs the error).
tests/test_flower_internals.py checks that Flower's module still has this shape.
"""

from __future__ import annotations

import flwr.supernode.runtime.run_clientapp as runner
import httpx

# what a connection the peer closed gives: the request could not be written, or no reply came on it
STALE_CONNECTION = (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
TRIES = 3  # each on a fresh connection: httpx drops one that failed


def push_task_output(client, context, sub_status: str, details: str) -> None:
    """Flower's push_task_output, with a failed connection tried again (TRIES in all)."""
    request = runner.PushTaskOutputRequest(
        context=runner.context_to_proto(context) if context else None, sub_status=sub_status, details=details)
    for _ in range(TRIES - 1):
        try:
            client.PushTaskOutput(request)
            return
        except STALE_CONNECTION:
            continue
        except httpx.HTTPError:
            break
    flower_push_task_output(client, context, sub_status, details)  # the last try, logged as Flower does


flower_push_task_output = runner.push_task_output


def install() -> None:
    runner.push_task_output = push_task_output
