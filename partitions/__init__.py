"""Deterministic ways to split a labelled data set over clients.

    >>> import numpy as np
    >>> from partitions import split
    >>> parts = split(np.array([0, 1] * 50), num_clients=4, scheme="iid", seed=0)
    >>> [len(p) for p in parts]
    [25, 25, 25, 25]

Each function takes the labels only and returns one index array per client; the
caller slices its own data with them, so nothing here copies images.

    schemes.py IID, Dirichlet and shard partitioners over a label vector

Imports contract/ (its bad-input error) only.
"""

from partitions.schemes import SCHEMES, PartitionError, split, train_test_split

__all__ = ["SCHEMES", "PartitionError", "split", "train_test_split"]
