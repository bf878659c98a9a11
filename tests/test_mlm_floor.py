"""The no-context floor of a masked-LM loss: closed forms, an empirical check against the collator's own corruption,
and the floor the pretraining script logs next to its losses."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import entropy

from hf_genomics import DataCollatorForRandomMask, NucleotideTokenizer
from hf_genomics.metrics import no_context_mlm_loss

P = np.array([0.4, 0.3, 0.2, 0.1])


def test_mask_only_floor_is_the_entropy():
    assert no_context_mlm_loss(P * 1000, [0, 1, 2, 3], 1.0, 0.0) == pytest.approx(entropy(P))


def test_kept_tokens_cost_nothing_without_random_replacement():
    # Unchanged tokens are never wrong when nothing is replaced at random: only the 80 % [MASK] share costs H(p).
    assert no_context_mlm_loss(P, [0, 1, 2, 3], 0.8, 0.0) == pytest.approx(0.8 * entropy(P))


def test_uniform_nucleotides_closed_form():
    # Shown token x: P(x, v = x) = 0.25 (0.1/4 + 0.1) of P(x) = 0.05, so 0.625; each other v: 0.25 * 0.1/4 / 0.05 = 0.125.
    expected = 0.8 * math.log(4) + 0.2 * (-0.625 * math.log(0.625) - 0.375 * math.log(0.125))
    assert no_context_mlm_loss([1, 1, 1, 1], [0, 1, 2, 3]) == pytest.approx(expected)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="token_counts"):
        no_context_mlm_loss([0, 0], [0])
    with pytest.raises(ValueError, match="replacement_ids"):
        no_context_mlm_loss([1, 1], [2])
    with pytest.raises(ValueError, match="sum to at most 1"):
        no_context_mlm_loss([1, 1], [0, 1], 0.9, 0.2)


def test_collator_floor_matches_the_best_context_free_predictor_of_its_own_corruption():
    """Corrupt a skewed corpus with the collator itself, fit the best context-free predictor (the empirical
    posterior of the true token given the shown token) and score it: its loss is the formula's floor."""
    tokenizer = NucleotideTokenizer()
    rng = np.random.default_rng(0)
    sequences = ["".join(rng.choice(list("ACGT"), size=100, p=P)) for _ in range(400)]
    rows = tokenizer(sequences)["input_ids"]
    collator = DataCollatorForRandomMask(tokenizer, mlm_probability=0.15, schedule="fixed", seed=0)
    shown, truth = [], []
    for repeat in range(5):
        collator.set_epoch(repeat)
        for start in range(0, len(rows), 100):
            batch = collator([{"input_ids": row} for row in rows[start : start + 100]])
            labelled = batch["labels"] != -100
            shown.append(batch["input_ids"][labelled])
            truth.append(batch["labels"][labelled])
    shown, truth = torch.cat(shown).numpy(), torch.cat(truth).numpy()
    joint = np.zeros((len(tokenizer), len(tokenizer)))
    np.add.at(joint, (shown, truth), 1)
    posterior = joint / joint.sum(axis=1, keepdims=True).clip(min=1)
    empirical = -np.mean(np.log(posterior[shown, truth]))
    assert shown.size > 25_000
    assert empirical == pytest.approx(collator.no_context_floor(rows), abs=0.01)
    # The floor sits below the [MASK]-only entropy and above 0.8 of it.
    assert 0.8 * entropy(P) < collator.no_context_floor(rows) < entropy(P)
