"""DNABERT's span masking, transcribed once: the baseline of `bench_collator.py` and the reference of the tests.

jerryji1993/DNABERT examples/run_pretrain.py::mask_tokens, with an optional explicit generator (None: the
global RNG, as in DNABERT).
"""

from copy import deepcopy

import torch

MASK_LIST = {3: [-1, 1], 4: [-1, 1, 2], 5: [-2, -1, 1, 2], 6: [-2, -1, 1, 2, 3]}


def dnabert_mask_tokens(inputs, tokenizer, mlm_probability, generator=None):
    """Returns (inputs, labels, replaced-by-[MASK] positions, randomised positions)."""
    mask_list = MASK_LIST[tokenizer.k]
    labels = inputs.clone()
    probability_matrix = torch.full(labels.shape, mlm_probability)
    special_tokens_mask = [
        tokenizer.get_special_tokens_mask(val, already_has_special_tokens=True) for val in labels.tolist()
    ]
    probability_matrix.masked_fill_(torch.tensor(special_tokens_mask, dtype=torch.bool), value=0.0)
    probability_matrix.masked_fill_(labels.eq(tokenizer.pad_token_id), value=0.0)
    masked_indices = torch.bernoulli(probability_matrix, generator=generator).bool()
    masks = deepcopy(masked_indices)
    for i, masked_index in enumerate(masks):
        end = torch.where(probability_matrix[i] != 0)[0].tolist()[-1]
        mask_centers = set(torch.where(masked_index == 1)[0].tolist())
        new_centers = deepcopy(mask_centers)
        for center in mask_centers:
            for mask_number in mask_list:
                current_index = center + mask_number
                if current_index <= end and current_index >= 1:
                    new_centers.add(current_index)
        masked_indices[i][list(new_centers)] = True
    labels[~masked_indices] = -100
    indices_replaced = torch.bernoulli(torch.full(labels.shape, 0.8), generator=generator).bool() & masked_indices
    inputs[indices_replaced] = tokenizer.convert_tokens_to_ids(tokenizer.mask_token)
    indices_random = (
        torch.bernoulli(torch.full(labels.shape, 0.5), generator=generator).bool() & masked_indices & ~indices_replaced
    )
    random_words = torch.randint(len(tokenizer), labels.shape, dtype=torch.long, generator=generator)
    inputs[indices_random] = random_words[indices_random]
    return inputs, labels, indices_replaced, indices_random
