"""The no-context floor of a masked-LM loss: the lowest loss of a predictor that sees no context.

Under BERT's corruption (Devlin et al., 2019) a label position shows ``[MASK]`` with probability ``a``, a random
replacement token with probability ``b`` and its own token otherwise (``c = 1 - a - b``). A predictor without
context sees only that input token ``x``; its best guess for the true token ``v`` is the posterior
``P(v | x) ∝ P(x, v)``, where ``P([MASK], v) = a p_v`` and, for ``x`` a token, ``P(x, v) = p_v (b [x in R] / |R|
+ c [x = v])`` (``p``: frequencies of the maskable tokens, ``R``: the replacement tokens). Its expected cross
entropy, ``a H(p) + E_{x != [MASK]}[-log P(v | x)]``, is the floor: a masked-LM loss at or above it shows that the
model learnt the token frequencies, not context.
"""

from __future__ import annotations

import numpy as np


def no_context_mlm_loss(
    token_counts, replacement_ids, mask_replace_prob: float = 0.8, random_replace_prob: float = 0.1
) -> float:
    """Expected cross entropy (nats) of the best context-free predictor on masked-LM label positions.

    ``token_counts[i]``: how often token id ``i`` occurs among the maskable tokens of the corpus;
    ``replacement_ids``: the ids random replacements are drawn from (uniformly).

    Example: four equally frequent nucleotides under 80/10/10 corruption.

    ```python
    >>> round(no_context_mlm_loss([25, 25, 25, 25], [0, 1, 2, 3]), 4)
    1.3238

    ```
    """
    counts = np.asarray(token_counts, dtype=np.float64)
    replacement_ids = np.asarray(replacement_ids, dtype=np.int64)
    if counts.ndim != 1 or counts.sum() <= 0 or (counts < 0).any():
        raise ValueError("token_counts must be a 1-D array of non-negative counts with a positive sum.")
    if replacement_ids.size == 0 or replacement_ids.min() < 0 or replacement_ids.max() >= counts.size:
        raise ValueError(f"replacement_ids must be non-empty ids in [0, {counts.size}).")
    keep_prob = 1.0 - mask_replace_prob - random_replace_prob
    if min(mask_replace_prob, random_replace_prob, keep_prob) < 0:
        raise ValueError("mask_replace_prob and random_replace_prob must be >= 0 and sum to at most 1.")
    p = counts / counts.sum()
    masked = -np.sum(p[p > 0] * np.log(p[p > 0]))
    # joint[x, v] = P(input x, true v) over the non-[MASK] inputs.
    joint = np.zeros((counts.size, counts.size))
    joint[replacement_ids] += random_replace_prob / np.unique(replacement_ids).size * p
    joint[np.arange(counts.size), np.arange(counts.size)] += keep_prob * p
    row = joint.sum(axis=1, keepdims=True)
    present = joint > 0
    shown = -np.sum(joint[present] * np.log((joint / np.where(row > 0, row, 1.0))[present]))
    return float(mask_replace_prob * masked + shown)
