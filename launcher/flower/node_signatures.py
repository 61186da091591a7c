"""A SuperNode signs its timestamp once every few seconds; the SuperLink checks each signature once.

    verify_once_in_superlink()    # in the SuperLink's process (launcher.flower.quick_superlink)
    sign_once_in_supernode()      # in a SuperNode's (launcher.flower.quick_supernode)

Flower authenticates every call of its HTTP Fleet API: the SuperNode signs the current timestamp with its
node key (ECDSA P-384, ~0.3 ms) and sends key, timestamp and signature as headers; the SuperLink checks the
timestamp's age, the signature (~0.7 ms with parsing the key) and that the key is the node's. A task is about
eight Fleet calls: on fifty local clients the signature checks were a fifth of the SuperLink's CPU.

Flower accepts a signed timestamp for TIMESTAMP_TOLERANCE (300 s). Here a SuperNode signs a fresh one every
REUSE_SECONDS and sends it with each call in between, and the SuperLink remembers the (key, timestamp,
signature) triples that verified: the same triple verifies the same way every time. Flower's own code still
checks, on every call, the timestamp's age and which node the key belongs to; any other triple (another
signature, another timestamp) is verified afresh. tests/test_flower_internals.py pins the names replaced.
"""

from __future__ import annotations

import time

REUSE_SECONDS = 10.0  # a SuperNode's signed timestamp is sent this long (Flower accepts one for 300 s)
REMEMBERED = 4096  # triples (and parsed keys) the SuperLink keeps; all forgotten at once when full


def verify_once_in_superlink() -> None:
    """Flower's node authentication in this process parses each public key once and verifies each
    (key, timestamp, signature) triple once (its successes remembered, up to REMEMBERED)."""
    import flwr.superlink.routers.fleet.node_auth as node_auth  # noqa: PLC0415 (the SuperLink's process only)

    if getattr(node_auth.verify_signature, "remembers", False):
        return
    verify, parse = node_auth.verify_signature, node_auth.bytes_to_public_key
    keys: dict[bytes, object] = {}
    verified: dict[tuple[int, bytes, bytes], object] = {}  # (id(key), timestamp, signature) -> the key (kept alive)

    def parse_once(data: bytes):
        key = keys.get(data)
        if key is None:
            if len(keys) >= REMEMBERED:
                keys.clear()
            key = keys[data] = parse(data)
        return key

    def verify_once(public_key, message: bytes, signature: bytes) -> bool:
        triple = (id(public_key), bytes(message), bytes(signature))
        if verified.get(triple) is public_key:
            return True
        ok = verify(public_key, message, signature)
        if ok:
            if len(verified) >= REMEMBERED:
                verified.clear()
            verified[triple] = public_key
        return ok

    verify_once.remembers = True
    node_auth.bytes_to_public_key, node_auth.verify_signature = parse_once, verify_once


def sign_once_in_supernode() -> None:
    """Flower's SuperNode in this process signs the timestamp it sends with its Fleet calls every REUSE_SECONDS,
    not on every call."""
    import flwr.supernode.node_auth_http_interceptor as interceptor  # noqa: PLC0415

    if getattr(interceptor.sign_message, "remembers", False):
        return
    clock, sign = interceptor.now, interceptor.sign_message
    held: dict[str, tuple] = {}

    def now_held():
        stamp = held.get("now")
        if stamp is None or time.monotonic() - stamp[1] >= REUSE_SECONDS:
            stamp = held["now"] = (clock(), time.monotonic())
        return stamp[0]

    def sign_once(private_key, message: bytes) -> bytes:
        last = held.get("signed")
        if last is not None and last[0] is private_key and last[1] == message:
            return last[2]
        signature = sign(private_key, message)
        held["signed"] = (private_key, bytes(message), signature)
        return signature

    sign_once.remembers = True
    interceptor.now, interceptor.sign_message = now_held, sign_once
