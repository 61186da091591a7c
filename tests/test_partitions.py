import numpy as np
import pytest

from partitions import PartitionError, split, train_test_split

LABELS = np.repeat(np.arange(10), 60)  # 600 samples, 10 balanced classes


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards"])
def test_disjoint_and_complete(scheme):
    parts = split(LABELS, 7, scheme, seed=3)
    assert len(parts) == 7
    joined = np.concatenate(parts)
    assert len(joined) == len(LABELS) == len(np.unique(joined))
    assert all(len(p) >= 2 for p in parts)


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shards"])
def test_same_seed_same_split_other_seed_other_split(scheme):
    a, b, c = (split(LABELS, 5, scheme, seed=s) for s in (1, 1, 2))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_iid_sizes_differ_by_at_most_one():
    sizes = [len(p) for p in split(LABELS, 7, "iid", seed=0)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 600


def _label_entropy(parts):
    ents = []
    for p in parts:
        counts = np.bincount(LABELS[p], minlength=10) / len(p)
        nz = counts[counts > 0]
        ents.append(-(nz * np.log(nz)).sum())
    return float(np.mean(ents))


def test_dirichlet_skew_grows_as_alpha_shrinks():
    iid = _label_entropy(split(LABELS, 10, "iid", seed=0))
    mild = _label_entropy(split(LABELS, 10, "dirichlet", seed=0, alpha=1.0))
    harsh = _label_entropy(split(LABELS, 10, "dirichlet", seed=0, alpha=0.1))
    assert iid > mild > harsh
    assert harsh < 0.6 * np.log(10)


def test_shards_give_each_client_few_classes():
    parts = split(LABELS, 10, "shards", seed=0, shards_per_client=2)
    assert max(len(np.unique(LABELS[p])) for p in parts) <= 2 * 2


def test_too_few_samples_and_bad_parameters():
    with pytest.raises(PartitionError, match="cannot give"):
        split(np.arange(5), 3, "iid")
    with pytest.raises(PartitionError, match="alpha"):
        split(LABELS, 3, "dirichlet", alpha=0)
    with pytest.raises(PartitionError, match="unknown partition scheme"):
        split(LABELS, 3, "zipf")


def test_train_test_split_keeps_one_of_each():
    train, test = train_test_split(np.arange(100, 110), 0.2, seed=0)
    assert len(train) == 8 and len(test) == 2
    assert set(train) | set(test) == set(range(100, 110)) and not set(train) & set(test)
    train, test = train_test_split(np.array([4, 9]), 0.2, seed=0)
    assert len(train) == 1 and len(test) == 1
