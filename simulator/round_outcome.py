"""Why a round was not aggregated (or a model not served), and what that makes of the run.

    missing = Missing(sent=2, errors=[], lost=0, silent=1, timeout=8.0)
    missing.describe()
    # 'timed out after 8 s waiting for 1 of 2 replies'
    not_aggregated_reason({1: "1 of 2 replies, 2 needed: " + missing.describe()})
    # 'round 1 not aggregated (1 of 2 replies, 2 needed: timed out after 8 s waiting for 1 of 2 replies)'
    is_finite(arrays)          # an ArrayRecord: False when any value is NaN or infinite
    # True

A run is finished only when it did what was asked: the ServerApp raises ``RunNotDone``
with one of these texts, which becomes the run's reason (server.log's ``[run] failed:``
line, run.json's ``reason``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, Message

ERRORS_AT = "each client's error: client_<i>/worker.log"
_REASON_CHARS = 160  # of a client's error text, in a reason


class RunNotDone(RuntimeError):
    """The run cannot end as asked (a round not aggregated, a model not served, a non-finite model).

    Its text is the whole reason, one line."""


@dataclass(frozen=True)
class Missing:
    """The replies that did not come, by cause, out of ``sent`` messages."""

    sent: int
    errors: list[str] = field(default_factory=list)  # each error reply's reason
    lost: int = 0  # no reply: the client's process exited (contract.lost_nodes)
    silent: int = 0  # no reply from a live client when the wait timed out
    timeout: float = 0.0

    @classmethod
    def of(cls, sent: Iterable[int], replies: list[Message], lost: set[int], timeout: float) -> "Missing":
        sent = list(sent)
        # a reply the SuperLink made for an unreachable node need not carry that node's id: count, do not match
        unanswered = max(0, len(sent) - len(replies))
        replied = {m.metadata.src_node_id for m in replies}
        gone = min(unanswered, sum(n in lost and n not in replied for n in sent))
        return cls(sent=len(sent), errors=[m.error.reason for m in replies if m.has_error()],
                   lost=gone, silent=unanswered - gone, timeout=timeout)

    def describe(self) -> str:
        """Each cause with its count; "" when every message got a good reply."""
        parts = []
        if self.silent:
            parts.append(f"timed out after {self.timeout:g} s waiting for {self.silent} of {self.sent} replies")
        if self.lost:
            parts.append(f"{self.lost} of {self.sent} clients exited before replying")
        if self.errors:
            first = (self.errors[0].strip().splitlines() or ["no reason given"])[0][:_REASON_CHARS]
            parts.append(f"{len(self.errors)} of {self.sent} clients replied with an error ({first}; {ERRORS_AT})")
        return "; ".join(parts)


def is_finite(arrays: ArrayRecord) -> bool:
    return all(np.isfinite(a.numpy()).all() for a in arrays.values())


def _ranges(rounds: list[int]) -> str:
    """[1, 2, 3, 5] -> 'rounds 1-3, 5'; [4] -> 'round 4'."""
    spans: list[list[int]] = []
    for r in sorted(rounds):
        if spans and r == spans[-1][1] + 1:
            spans[-1][1] = r
        else:
            spans.append([r, r])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
    return f"round {text}" if len(rounds) == 1 else f"rounds {text}"


def not_aggregated_reason(skipped: dict[int, str]) -> str:
    """One line naming the rounds not aggregated, rounds with the same cause together."""
    by_cause: dict[str, list[int]] = {}
    for rnd, why in sorted(skipped.items()):
        by_cause.setdefault(why, []).append(rnd)
    return "; ".join(f"{_ranges(rounds)} not aggregated ({why})" for why, rounds in by_cause.items())
