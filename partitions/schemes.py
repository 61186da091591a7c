"""IID, Dirichlet and shard partitioners over a label vector.

    >>> import numpy as np
    >>> labels = np.repeat(np.arange(10), 30)
    >>> parts = split(labels, num_clients=5, scheme="dirichlet", seed=1, alpha=0.5)
    >>> sorted(np.concatenate(parts).tolist()) == list(range(300))
    True

Every scheme gives disjoint index arrays that together cover the data set, the
same ones for the same seed, with at least ``min_size`` samples per client.
"""

from __future__ import annotations

import numpy as np

from contract.errors import InputError

SCHEMES = ("iid", "dirichlet", "shards")


class PartitionError(InputError):
    """The data set cannot be split as asked (too few samples, bad parameters)."""


def split(
    labels: np.ndarray,
    num_clients: int,
    scheme: str = "iid",
    seed: int = 0,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    min_size: int = 2,
) -> list[np.ndarray]:
    """Return one sorted index array per client."""
    labels = np.asarray(labels)
    if num_clients < 1:
        raise PartitionError("the number of clients must be at least 1")
    if len(labels) < num_clients * min_size:
        raise PartitionError(
            f"{len(labels)} samples cannot give {num_clients} clients "
            f"{min_size} samples each"
        )
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(len(labels)), num_clients)
    elif scheme == "dirichlet":
        if not alpha > 0:
            raise PartitionError(f"alpha must be positive, got {alpha}")
        parts = _dirichlet(labels, num_clients, alpha, rng, min_size)
    elif scheme == "shards":
        parts = _shards(labels, num_clients, shards_per_client, rng)
    else:
        raise PartitionError(f"unknown partition scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    return [np.sort(p).astype(np.int64) for p in parts]


def train_test_split(
    indices: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split one client's indices into train and test, at least one of each."""
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(indices)
    n_test = min(max(1, round(len(indices) * test_fraction)), len(indices) - 1)
    return np.sort(shuffled[n_test:]), np.sort(shuffled[:n_test])


def _dirichlet(
    labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator, min_size: int
) -> list[np.ndarray]:
    """Per class, share its samples over clients by Dirichlet(alpha) proportions.

    Draws again (up to 50 times) while a client falls below ``min_size``; if the
    data is too small for that, tops small clients up from the largest one.
    """
    classes = np.unique(labels)
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    for _ in range(50):
        buckets: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for idx in by_class:
            shares = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
            for client, chunk in enumerate(np.split(idx, cuts)):
                buckets[client].append(chunk)
        parts = [np.concatenate(b) for b in buckets]
        if min(len(p) for p in parts) >= min_size:
            return parts
    return _top_up(parts, min_size)


def _top_up(parts: list[np.ndarray], min_size: int) -> list[np.ndarray]:
    parts = [p.copy() for p in parts]
    for i, part in enumerate(parts):
        while len(part) < min_size:
            donor = max(range(len(parts)), key=lambda j: len(parts[j]))
            part = np.append(part, parts[donor][-1])
            parts[donor] = parts[donor][:-1]
        parts[i] = part
    return parts


def _shards(
    labels: np.ndarray, num_clients: int, shards_per_client: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Sort by label, cut into equal shards, give each client a few at random."""
    if shards_per_client < 1:
        raise PartitionError("shards per client must be at least 1")
    num_shards = num_clients * shards_per_client
    if num_shards > len(labels):
        raise PartitionError(
            f"{len(labels)} samples cannot make {num_shards} shards "
            f"({num_clients} clients x {shards_per_client})"
        )
    order = np.argsort(labels, kind="stable")
    shards = np.array_split(order, num_shards)
    owner = rng.permutation(num_shards)
    return [
        np.concatenate([shards[s] for s in owner[c * shards_per_client : (c + 1) * shards_per_client]])
        for c in range(num_clients)
    ]
