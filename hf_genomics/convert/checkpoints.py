"""Convert upstream checkpoints to BEACON-B folders (`BeaconForMaskedLM`, loadable with any `AutoModel*`).

Two layouts are supported, both BERT module naming under the prefix `bert.` with the MLM head under `cls.`:

- `beacon`: the official BEACON-B release (RNABenchmark's `RnaLmForMaskedLM`/`RnaLmModel`, Ren et al., 2024): an
  `EsmConfig`-style `config.json` with `"position_embedding_type": "alibi"`, no position embeddings, vocab 10. The
  released files lack the MLM head (RNABenchmark issue #13); the converter then warns and leaves it freshly
  initialised.
- `dnabert`: DNABERT (Ji et al., 2021), a transformers `BertForMaskedLM` with learned absolute positions and a 6-mer
  vocabulary of 4,101 tokens.
"""

import json
import os
import warnings
from pathlib import Path

import torch

from ..models.beacon import BeaconConfig, BeaconForMaskedLM

# Config fields copied from the upstream config.json when present (both layouts use BERT's field names).
SHARED_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "pad_token_id",
)
POSITION_TYPE_OF_LAYOUT = {"beacon": "alibi", "dnabert": "absolute"}
MLM_HEAD_PREFIX = "cls.predictions."
POOLER_PREFIX = "beacon.pooler."
# Upstream buffers that carry no learned state here (ALiBi and position ids are rebuilt by the model).
IGNORED_SUFFIXES = ("position_ids", "alibi", "alibi_tensor", "token_type_ids")


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint folder: `model.safetensors` (or shards listed in its index) or
    `pytorch_model.bin`."""
    from safetensors.torch import load_file

    if (folder / "model.safetensors").exists():
        return load_file(folder / "model.safetensors")
    if (folder / "model.safetensors.index.json").exists():
        shards = sorted(set(json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"].values()))
        return {key: value for shard in shards for key, value in load_file(folder / shard).items()}
    if (folder / "pytorch_model.bin").exists():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(
        f"No weights in {folder}: expected model.safetensors, model.safetensors.index.json or pytorch_model.bin."
    )


def beacon_config_from_upstream(upstream: dict, layout: str) -> BeaconConfig:
    """A BeaconConfig from an upstream config.json; refuses a position scheme the layout does not have."""
    expected = POSITION_TYPE_OF_LAYOUT[layout]
    found = upstream.get("position_embedding_type", "absolute")
    if found != expected:
        raise ValueError(
            f"The {layout!r} layout has position_embedding_type={expected!r}, but the checkpoint config says "
            f"{found!r}; only 'alibi' (BEACON-B) and 'absolute' (DNABERT/BERT) positions can be converted."
        )
    fields = {name: upstream[name] for name in SHARED_FIELDS if upstream.get(name) is not None}
    fields.setdefault("hidden_act", "gelu")
    if layout == "beacon":
        # ALiBi has no position table; BEACON's `max_position_embeddings` is only the tokenizer's length cap.
        fields.pop("max_position_embeddings", None)
    return BeaconConfig(**fields, position_embedding_type=expected)


def rename_upstream_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`bert.*` -> `beacon.*`, legacy `LayerNorm.gamma/beta` -> `weight/bias`, rebuilt buffers dropped."""
    renamed = {}
    for key, tensor in state_dict.items():
        if key.endswith(IGNORED_SUFFIXES):
            continue
        if key.startswith("bert."):
            key = "beacon." + key[len("bert.") :]
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        renamed[key] = tensor
    return renamed


def _check_against_model(state_dict: dict[str, torch.Tensor], model: BeaconForMaskedLM) -> None:
    expected = {**model.state_dict()}
    expected.update({f"{POOLER_PREFIX}dense.weight": None, f"{POOLER_PREFIX}dense.bias": None})
    unknown = sorted(key for key in state_dict if key not in expected)
    if unknown:
        raise ValueError(
            f"The checkpoint has weights the config does not describe (wrong layout or num_hidden_layers?): "
            f"{unknown[:8]}{' ...' if len(unknown) > 8 else ''}"
        )
    mismatched = [
        f"{key}: checkpoint {tuple(tensor.shape)} vs config {tuple(expected[key].shape)}"
        for key, tensor in state_dict.items()
        if expected[key] is not None and tensor.shape != expected[key].shape
    ]
    if mismatched:
        raise ValueError("The checkpoint contradicts its config.json: " + "; ".join(mismatched[:8]))
    missing = sorted(
        key
        for key in expected
        if key not in state_dict and not key.startswith((MLM_HEAD_PREFIX, POOLER_PREFIX)) and expected[key] is not None
    )
    if missing:
        raise ValueError(f"The checkpoint lacks encoder weights: {missing[:8]}{' ...' if len(missing) > 8 else ''}")


def convert_checkpoint(layout: str, source_dir: str | os.PathLike, output_dir: str | os.PathLike) -> BeaconForMaskedLM:
    """Convert the checkpoint in `source_dir` (`layout` "beacon" or "dnabert") and save it to `output_dir`.

    The pooler (used by the sequence heads) is saved next to the MLM weights, so `AutoModel` and
    `AutoModelForSequenceClassification` load it from the converted folder too.
    """
    if layout not in POSITION_TYPE_OF_LAYOUT:
        raise ValueError(f"layout must be one of {sorted(POSITION_TYPE_OF_LAYOUT)}, got {layout!r}.")
    source = Path(source_dir)
    config_file = source / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file} not found: a checkpoint folder needs its config.json.")
    config = beacon_config_from_upstream(json.loads(config_file.read_text()), layout)
    state_dict = rename_upstream_keys(read_state_dict(source))
    # The decoder is tied to the word embeddings; upstream files may or may not store the copy.
    state_dict.pop(f"{MLM_HEAD_PREFIX}decoder.weight", None)
    state_dict.pop(f"{MLM_HEAD_PREFIX}decoder.bias", None)

    model = BeaconForMaskedLM(config)
    _check_against_model(state_dict, model)
    if not any(key.startswith(MLM_HEAD_PREFIX) for key in state_dict):
        warnings.warn(
            f"{source} has no MLM head (`cls.predictions.*`); the converted BeaconForMaskedLM keeps a freshly "
            "initialised head. The encoder (and pooler) are converted; fine-tune or pretrain before using "
            "masked-token predictions.",
            UserWarning,
            stacklevel=2,
        )
    model.load_state_dict({k: v for k, v in state_dict.items() if not k.startswith(POOLER_PREFIX)}, strict=False)
    model.eval()
    to_save = dict(model.state_dict())
    to_save.update({key: value for key, value in state_dict.items() if key.startswith(POOLER_PREFIX)})
    model.save_pretrained(output_dir, state_dict=to_save)
    return model


__all__ = ["convert_checkpoint", "read_state_dict", "rename_upstream_keys", "beacon_config_from_upstream"]
