"""Refuse a tokenizer that does not fit a model: with a different vocabulary every id means another token, and
training still runs and reports numbers."""

from __future__ import annotations

from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

SPECIAL_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id", "mask_token_id")


class TokenizerMismatchError(ValueError):
    """A tokenizer's vocabulary or special-token ids disagree with a model's config."""


def tokenizer_mismatches(tokenizer, config) -> list[str]:
    """What disagrees between `tokenizer` and a model `config` (empty when they fit): more tokens than the
    embedding has rows, a `tokenizer_class` other than the one the config names, or a special-token id that both
    define differently. A tokenizer with fewer tokens than `vocab_size` fits (vocabularies are often padded)."""
    problems = []
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        problems.append(f"the tokenizer has {len(tokenizer)} tokens but the model embeds only {vocab_size} "
                        f"(ids >= {vocab_size} have no embedding)")
    expected_class = getattr(config, "tokenizer_class", None)
    if expected_class and expected_class != type(tokenizer).__name__:
        problems.append(f"the config names tokenizer_class={expected_class!r}, got a {type(tokenizer).__name__}")
    for name in SPECIAL_IDS:
        model_id, tokenizer_id = getattr(config, name, None), getattr(tokenizer, name, None)
        if model_id is not None and tokenizer_id is not None and model_id != tokenizer_id:
            problems.append(f"{name} is {tokenizer_id} in the tokenizer but {model_id} in the model config")
    return problems


def _config_of(model_or_config):
    """The config itself, or that of the first transformers model inside a wrapper (DDP, PEFT, a trainer's
    model-plus-head module)."""
    if isinstance(model_or_config, PreTrainedConfig):
        return model_or_config
    if isinstance(model_or_config, nn.Module):
        for module in model_or_config.modules():
            if isinstance(module, PreTrainedModel):
                return module.config
    return getattr(model_or_config, "config", None)


def check_tokenizer_matches_model(tokenizer, model_or_config, allow_mismatch: bool = False) -> None:
    """Raise `TokenizerMismatchError` when `tokenizer` does not fit the model (or config), unless `allow_mismatch`.

    Example:

    ```python
    >>> from hf_genomics import BeaconConfig, KmerTokenizer, NucleotideTokenizer, check_tokenizer_matches_model
    >>> check_tokenizer_matches_model(NucleotideTokenizer(), BeaconConfig())  # BEACON-B's own vocabulary: fits
    >>> check_tokenizer_matches_model(KmerTokenizer(k=6), BeaconConfig())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hf_genomics.tokenizer_compatibility.TokenizerMismatchError: KmerTokenizer does not fit the model: the tokenizer \
has 4105 tokens but the model embeds only 10 (...); pad_token_id is 0 in the tokenizer but 1 in the model config. ...

    ```
    """
    if not isinstance(tokenizer, PreTrainedTokenizerBase) or allow_mismatch:
        return
    config = _config_of(model_or_config)
    problems = tokenizer_mismatches(tokenizer, config) if config is not None else []
    if problems:
        raise TokenizerMismatchError(
            f"{type(tokenizer).__name__} does not fit the model: {'; '.join(problems)}. Use the tokenizer the model "
            "was trained with (saved next to it), or pass allow_tokenizer_mismatch=True (--allow_tokenizer_mismatch) "
            "if the ids really mean the same tokens."
        )
