"""Long-tailed subsampling of a labelled set, the usual protocol of class-imbalance papers such as IMWA
(Huang et al., 2024): exponential class-size profile as in CIFAR-10/100-LT (Cui et al., 2019)."""

import numpy as np


def long_tailed_indices(labels, ratio: float, head_size: int, seed: int) -> np.ndarray:
    """Sorted indices of a long-tailed subsample of ``labels``.

    The classes, in a seeded random order, keep ``head_size * ratio^(-i / (C - 1))`` members each (at least one,
    at most all they have), so the largest class is ``ratio`` times the smallest when every class has enough.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if ratio < 1 or head_size < 1 or len(classes) < 2:
        raise ValueError(
            f"Need ratio >= 1, head_size >= 1 and at least 2 classes; got ratio={ratio}, head_size={head_size}, "
            f"{len(classes)} class(es)."
        )
    rng = np.random.default_rng(seed)
    keep = []
    for rank, label in enumerate(rng.permutation(classes)):
        members = np.flatnonzero(labels == label)
        size = min(len(members), max(1, round(head_size * ratio ** (-rank / (len(classes) - 1)))))
        keep.append(rng.choice(members, size=size, replace=False))
    return np.sort(np.concatenate(keep))
