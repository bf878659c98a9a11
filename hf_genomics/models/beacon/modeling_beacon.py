"""PyTorch BEACON-B model: a post-LayerNorm BERT encoder with symmetric ALiBi attention biases.

This file imports only torch and transformers (plus the configuration next to it) so that a saved folder loads
with `trust_remote_code=True` on machines without `hf_genomics`.
"""

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.dynamic_module_utils import custom_object_save
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple, logging
from transformers.utils.output_capturing import capture_outputs

from .configuration_beacon import CLASSIFIER_POOLING_TYPES, BeaconConfig

logger = logging.get_logger(__name__)

# `save_pretrained` only records the saved class in `auto_map`; listing every entry lets any saved head be
# reloaded as any of these with `trust_remote_code=True`.
BEACON_AUTO_MAP = {
    "AutoConfig": "configuration_beacon.BeaconConfig",
    "AutoModel": "modeling_beacon.BeaconModel",
    "AutoModelForMaskedLM": "modeling_beacon.BeaconForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_beacon.BeaconForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_beacon.BeaconForTokenClassification",
}


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """Per-head ALiBi slopes (Press et al., 2022): the geometric series 2^(-8h/n) for the largest power of two
    n <= num_heads, then every other slope of the series for 2n (12 heads: 2^-1..2^-8, 2^-0.5, 2^-1.5, 2^-2.5,
    2^-3.5)."""

    def power_of_two_slopes(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]

    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = power_of_two_slopes(closest) + power_of_two_slopes(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


# ALiBi biases below -NEGLIGIBLE_ALIBI_BIAS are masked: see BeaconAlibiBias.
NEGLIGIBLE_ALIBI_BIAS = 60.0


def alibi_bias(slopes: torch.Tensor, query_start: int, query_end: int, key_start: int, key_end: int) -> torch.Tensor:
    """The float32 `(heads, queries, keys)` block `-slope_h * |i - j|` for query positions `query_start..query_end`
    and key positions `key_start..key_end`, `-inf` where it is below `-NEGLIGIBLE_ALIBI_BIAS`."""
    # float32 whatever the model dtype: bfloat16 cannot count positions beyond 256 exactly.
    queries = torch.arange(query_start, query_end, device=slopes.device, dtype=torch.float32)
    keys = torch.arange(key_start, key_end, device=slopes.device, dtype=torch.float32)
    bias = (keys[None, :] - queries[:, None]).abs_() * -slopes.float()[:, None, None]
    return bias.masked_fill_(bias < -NEGLIGIBLE_ALIBI_BIAS, float("-inf"))


def alibi_window(slopes: torch.Tensor) -> int:
    """How far any head sees: beyond this distance every head's bias is below `-NEGLIGIBLE_ALIBI_BIAS`."""
    return math.floor(NEGLIGIBLE_ALIBI_BIAS / float(slopes.min()))


class BeaconAlibiBias(nn.Module):
    """Symmetric ALiBi bias `-slope_h * |i - j|` as used by BEACON-B (following MosaicBERT's bidirectional form).

    Holds the slopes every attention path uses. Called, it returns the dense `(1, heads, L, L)` tensor of the
    `sdpa` and `eager` reference paths: built once per forward, shared by every layer and broadcast over the batch.

    Biases below `-NEGLIGIBLE_ALIBI_BIAS` (60) are masked (`-inf`): there the ALiBi factor `exp(bias)` is under
    1e-26, so those keys only count if their attention logit beats the query's own by more than ~44. Kept, they
    fill softmax and its backward with denormal floats, which x86 CPUs process many times slower (a 6x384 model
    then trains at 0.70-0.78x BERT's speed instead of ~1x; `benchmarks/bench_model.py`). Head h thus sees
    `60 / slope_h` tokens each way: 15,360 for the flattest of 12 heads.
    """

    def __init__(self, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.slopes = nn.Buffer(alibi_slopes(num_heads), persistent=False)

    def forward(self, seq_length: int, dtype: torch.dtype) -> torch.Tensor:
        return alibi_bias(self.slopes, 0, seq_length, 0, seq_length).to(dtype).unsqueeze(0)


class BeaconEmbeddings(nn.Module):
    """Word + token-type embeddings (+ learned positions when `position_embedding_type="absolute"`), LayerNorm,
    dropout."""

    def __init__(self, config: BeaconConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        if config.position_embedding_type == "absolute":
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
            self.position_ids = nn.Buffer(torch.arange(config.max_position_embeddings).unsqueeze(0), persistent=False)
        else:
            self.position_embeddings = None
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            try:
                inputs_embeds = self.word_embeddings(input_ids)
            except IndexError as error:
                # Only CPU lookups raise here (on CUDA an out-of-range id is a device-side assert). Checking the range
                # up front instead would cost every forward a device-to-host sync, so the explanation is added here.
                vocab_size = self.word_embeddings.num_embeddings
                raise ValueError(
                    f"input_ids range from {int(input_ids.min())} to {int(input_ids.max())}, but the embeddings take "
                    f"ids 0..{vocab_size - 1} (config.vocab_size={vocab_size}): the tokenizer probably does not match "
                    "the model (len(tokenizer) must not exceed config.vocab_size)."
                ) from error
        seq_length = inputs_embeds.shape[1]
        if token_type_ids is None:
            token_type_ids = torch.zeros(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        if self.position_embeddings is not None:
            if seq_length > self.position_embeddings.num_embeddings:
                raise ValueError(
                    f"Input has {seq_length} tokens but this model has learned (absolute) positions for at most "
                    f"{self.position_embeddings.num_embeddings}; truncate the input or use an ALiBi model."
                )
            if position_ids is None:
                position_ids = self.position_ids[:, :seq_length]
            embeddings = embeddings + self.position_embeddings(position_ids)
        embeddings = self.LayerNorm(embeddings)
        return self.dropout(embeddings)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    position_bias: torch.Tensor | None = None,
    **kwargs: Unpack[TransformersKwargs],
):
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if position_bias is not None:
        attn_weights = attn_weights + position_bias
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


# Query blocks of the blocked path span at most this many (batch x heads x queries x keys) scores: 64 MiB of float32
# where they are materialised (a sequence mask, or sdpa's math kernel in training).
BLOCKED_ATTENTION_BIAS_ELEMENTS = 2**24
# The automatic choice on CPU: the dense-bias sdpa path while its (B or 1, H, L, L) bias stays under this many
# elements (128 MiB of float32; in training 256 MiB, where every layer keeps (B, H, L, L) attention weights for
# backward anyway and the blocked path recomputes its blocks), the blocked path above.
DENSE_ALIBI_BIAS_MAX_ELEMENTS = 2**25
DENSE_ALIBI_BIAS_MAX_ELEMENTS_TRAINING = 2**26


def sequence_extents(sequence_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every token, the first and one-past-last column of its sequence in the row (`sequence_ids` as
    [`attention_sequence_ids`] makes them; padding counts as one more sequence)."""
    batch_size, length = sequence_ids.shape
    ids = (sequence_ids + 1).long()
    columns = torch.arange(length, device=ids.device).expand(batch_size, length)
    first = torch.full((batch_size, length + 1), length, device=ids.device).scatter_reduce(1, ids, columns, "amin")
    last = torch.full((batch_size, length + 1), -1, device=ids.device).scatter_reduce(1, ids, columns, "amax")
    return first.gather(1, ids), last.gather(1, ids) + 1


def blocked_attention_plan(
    num_heads: int, length: int, slopes: torch.Tensor | None, sequence_ids: torch.Tensor | None
) -> tuple[tuple[int, int, int, int], ...]:
    """`(query_start, query_end, key_start, key_end)` of each query block: keys outside its sequences and beyond
    every head's ALiBi window are never visited, so packed rows and long inputs cost O(L * span), not O(L^2)."""
    window = length if slopes is None else min(length, alibi_window(slopes))
    rows = 1 if sequence_ids is None else sequence_ids.shape[0]
    span = min(length, 2 * window + 1)
    block = max(16, BLOCKED_ATTENTION_BIAS_ELEMENTS // (rows * num_heads * span)) // 16 * 16
    starts = list(range(0, length, block))
    ends = [min(start + block, length) for start in starts]
    key_starts = [max(0, start - window) for start in starts]
    key_ends = [min(length, end + window) for end in ends]
    if sequence_ids is not None:
        first, last = sequence_extents(sequence_ids)
        block_of_column = (torch.arange(length, device=first.device) // block).expand_as(first).flatten()
        bounds = torch.full((len(starts),), length, device=first.device, dtype=first.dtype)
        first_keys = bounds.scatter_reduce(0, block_of_column, first.flatten(), "amin").tolist()
        last_keys = bounds.zero_().scatter_reduce(0, block_of_column, last.flatten(), "amax").tolist()
        key_starts = [max(a, b) for a, b in zip(key_starts, first_keys)]
        key_ends = [min(a, b) for a, b in zip(key_ends, last_keys)]
    return tuple(zip(starts, ends, key_starts, key_ends))


def _attention_block(query, reversed_key, reversed_value, block, slopes, sequence_ids, reversed_ids, scaling, dropout):
    """Attention of one query block over its key range, given with the keys in reverse order: the ALiBi bias of
    query i and (reversed) key j then depends on i + j only, a `(H, queries, keys)` view of one
    `(H, queries + keys - 1)` vector, never materialised unless a sequence mask has to be applied."""
    query_start, query_end, key_start, key_end = block
    num_queries, num_keys = query_end - query_start, key_end - key_start
    mask = None
    if slopes is not None:
        # Query i and reversed key j are |centre - (i + j)| apart.
        centre = key_end - 1 - query_start
        diagonal = alibi_bias(slopes, centre, centre + 1, 0, num_queries + num_keys - 1)[:, 0].to(query.dtype)
        heads = diagonal.shape[0]
        mask = diagonal.as_strided((1, heads, num_queries, num_keys), (0, diagonal.stride(0), 1, 1))
    if sequence_ids is not None:
        length = sequence_ids.shape[1]
        keys = reversed_ids[:, length - key_end : length - key_start]
        same = sequence_ids[:, query_start:query_end, None] == keys[:, None, :]
        mask = torch.zeros((), dtype=query.dtype, device=query.device) if mask is None else mask
        mask = mask.masked_fill(~same.unsqueeze(1), torch.finfo(query.dtype).min)
    return F.scaled_dot_product_attention(
        query, reversed_key, reversed_value, attn_mask=mask, dropout_p=dropout, scale=scaling
    )


def alibi_blocked_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
    sequence_ids: torch.Tensor | None = None,
    attention_blocks: tuple[tuple[int, int, int, int], ...] | None = None,
    **kwargs: Unpack[TransformersKwargs],
):
    """Attention one query block at a time, each block's ALiBi bias and sequence mask built on the fly: memory
    O(L * block) instead of the dense path's (H, L, L) bias, on any device. Under autograd each block is
    checkpointed (its bias is rebuilt in backward, not stored). `attention_mask` is unused: the model passes
    padding and packing as `sequence_ids`."""
    blocks = attention_blocks or blocked_attention_plan(query.shape[1], query.shape[2], alibi_slopes, sequence_ids)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    length = key.shape[2]
    reversed_key, reversed_value = key.flip(2), value.flip(2)
    reversed_ids = None if sequence_ids is None else sequence_ids.flip(1)
    outputs = []
    for block in blocks:
        query_start, query_end, key_start, key_end = block
        keys = slice(length - key_end, length - key_start)
        inputs = (query[:, :, query_start:query_end], reversed_key[:, :, keys], reversed_value[:, :, keys])
        arguments = (block, alibi_slopes, sequence_ids, reversed_ids, scaling, dropout)
        if needs_grad:
            outputs.append(checkpoint(_attention_block, *inputs, *arguments, use_reentrant=False))
        else:
            outputs.append(_attention_block(*inputs, *arguments))
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


# Flex attention compiles per shape: lengths are padded up to a power of two (at least one 128-token block) so that
# a run with varying lengths compiles a handful of kernels; the padded blocks are empty in the block mask.
FLEX_MIN_LENGTH = 128
# Shapes x dtypes x grad modes of one run easily exceed dynamo's default of 8 compiled versions per function, after
# which it would silently run flex attention un-compiled (materialising every score).
FLEX_RECOMPILE_LIMIT = 64
_compiled_flex_attention = None


def flex_padded_length(length: int, device: torch.device) -> int:
    if device.type != "cuda":
        return length
    return max(FLEX_MIN_LENGTH, 1 << (length - 1).bit_length())


def flex_kernel_options(head_dim: int, dtype: torch.dtype) -> dict:
    """Triton block sizes that fit the 228 KiB (sm90) / 164 KiB (sm80) of shared memory per block for head dims up
    to 128 in bf16 and fp32, forward and backward (the autotuned defaults of the backward need ~300 KiB on sm90)."""
    wide = head_dim * torch.tensor([], dtype=dtype).element_size() > 128
    return {
        "fwd_BLOCK_M": 64,
        "fwd_BLOCK_N": 32 if wide else 64,
        "fwd_num_stages": 2,
        "bwd_BLOCK_M1": 32,
        "bwd_BLOCK_N1": 64,
        "bwd_BLOCK_M2": 64,
        "bwd_BLOCK_N2": 32,
        "bwd_num_stages": 1 if wide else 2,
    }


def flex_block_mask(sequence_ids: torch.Tensor | None, batch_size: int, length: int, window: int, device):
    """The BlockMask of the flex path: attention within each sequence (padding is a sequence of its own), within
    the ALiBi window, and nothing for the positions added to reach the padded length. None when nothing is masked."""
    padded = flex_padded_length(length, device)
    if sequence_ids is None and padded == length and window >= length - 1:
        return None
    from torch.nn.attention.flex_attention import create_block_mask

    ids = torch.full((batch_size, padded), -2, dtype=torch.int32, device=device)
    ids[:, :length] = 0 if sequence_ids is None else sequence_ids

    def mask_mod(b, h, q_idx, kv_idx):
        same = (ids[b, q_idx] == ids[b, kv_idx]) & (ids[b, q_idx] != -2)
        return same & ((q_idx - kv_idx).abs() <= window)

    return create_block_mask(mask_mod, batch_size, None, padded, padded, device=device, _compile=device.type == "cuda")


def alibi_score_mod(slopes: torch.Tensor) -> Callable:
    """ALiBi as a flex attention `score_mod`: `score - slope_h * |q - k|`, computed inside the kernel."""
    slopes = slopes.float()

    def score_mod(score, batch, head, query_index, key_index):
        return score - slopes[head] * (query_index - key_index).abs()

    return score_mod


def alibi_flex_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    alibi_slopes: torch.Tensor | None = None,
    block_mask=None,
    **kwargs: Unpack[TransformersKwargs],
):
    """PyTorch flex attention with ALiBi as a `score_mod` (`score - slope_h * |q - k|`, no bias tensor) and padding,
    packing and the ALiBi window as a block mask. Compiled on CUDA; elsewhere it runs un-compiled, forward only
    (torch has no flex backward on CPU). Attention dropout is not applied on this path."""
    from torch.nn.attention.flex_attention import flex_attention

    global _compiled_flex_attention
    on_cuda = query.device.type == "cuda"
    if not on_cuda and torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value)):
        raise NotImplementedError(
            f'attn_implementation="alibi_flex" has no backward on {query.device.type} (torch computes flex '
            'attention gradients on CUDA only); train with "alibi_blocked", "sdpa" or the default "alibi_auto".'
        )
    if dropout > 0:
        logger.warning_once("alibi_flex attention does not apply attention dropout (attention_probs_dropout_prob).")
    length = query.shape[2]
    padded = block_mask.seq_lengths[0] if block_mask is not None else length
    if padded > length:
        query, key, value = (F.pad(t, (0, 0, 0, padded - length)) for t in (query, key, value))
    score_mod = None if alibi_slopes is None else alibi_score_mod(alibi_slopes.to(query.device))
    if on_cuda:
        if _compiled_flex_attention is None:
            _compiled_flex_attention = torch.compile(flex_attention, dynamic=False)
        attention, options = _compiled_flex_attention, flex_kernel_options(query.shape[-1], query.dtype)
    else:
        attention, options = flex_attention, None
    with torch._dynamo.config.patch(recompile_limit=FLEX_RECOMPILE_LIMIT) if on_cuda else contextlib.nullcontext():
        output = attention(
            query, key, value, score_mod=score_mod, block_mask=block_mask, scale=scaling, kernel_options=options
        )
    return output[:, :, :length].transpose(1, 2).contiguous(), None


AttentionInterface.register("alibi_blocked", alibi_blocked_attention_forward)
AttentionInterface.register("alibi_flex", alibi_flex_attention_forward)


class BeaconSelfAttention(nn.Module):
    def __init__(self, config: BeaconConfig):
        super().__init__()
        self.config = config
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.scaling = self.attention_head_size**-0.5
        self.is_causal = False
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.attention_head_size)
        query = self.query(hidden_states).view(hidden_shape).transpose(1, 2)
        key = self.key(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.value(hidden_states).view(hidden_shape).transpose(1, 2)

        # ALiBi models resolve "alibi_auto" per forward (BeaconModel passes the path taken).
        implementation = kwargs.pop("attention_implementation", self.config._attn_implementation)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.dropout.p if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        return attn_output.reshape(*input_shape, -1).contiguous(), attn_weights


class BeaconSelfOutput(nn.Module):
    def __init__(self, config: BeaconConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BeaconAttention(nn.Module):
    def __init__(self, config: BeaconConfig):
        super().__init__()
        self.self = BeaconSelfAttention(config)
        self.output = BeaconSelfOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attention_output, _ = self.self(hidden_states, attention_mask, **kwargs)
        return self.output(attention_output, hidden_states)


class BeaconIntermediate(nn.Module):
    def __init__(self, config: BeaconConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))


class BeaconOutput(nn.Module):
    def __init__(self, config: BeaconConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BeaconLayer(GradientCheckpointingLayer):
    """One post-LayerNorm transformer block: attention -> add & norm -> GELU FFN -> add & norm."""

    def __init__(self, config: BeaconConfig):
        super().__init__()
        self.attention = BeaconAttention(config)
        self.intermediate = BeaconIntermediate(config)
        self.output = BeaconOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attention_output = self.attention(hidden_states, attention_mask, **kwargs)
        return self.output(self.intermediate(attention_output), attention_output)


class BeaconEncoder(nn.Module):
    def __init__(self, config: BeaconConfig):
        super().__init__()
        self.layer = nn.ModuleList([BeaconLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        for layer_module in self.layer:
            hidden_states = layer_module(hidden_states, attention_mask, **kwargs)
        return hidden_states


class BeaconPooler(nn.Module):
    """tanh(dense(h)), h the first token's final state (`config.classifier_pooling="cls"`, as BERT and BEACON-B) or
    the mean of the final states over the attended tokens, special tokens included (`"mean"`, as ModernBERT)."""

    def __init__(self, config: BeaconConfig):
        super().__init__()
        self.config = config
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        pooling = self.config.classifier_pooling
        if pooling == "cls":
            pooled = hidden_states[:, 0]
        elif pooling == "mean" and attention_mask is None:
            pooled = hidden_states.mean(dim=1)
        elif pooling == "mean":
            weights = attention_mask.to(hidden_states).unsqueeze(-1)
            pooled = (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        else:  # set after the config checked it, e.g. by a `from_pretrained` keyword
            raise ValueError(f"`classifier_pooling` must be one of {CLASSIFIER_POOLING_TYPES}, got {pooling!r}.")
        return self.activation(self.dense(pooled))


class BeaconPredictionHeadTransform(nn.Module):
    def __init__(self, config: BeaconConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BeaconLMPredictionHead(nn.Module):
    def __init__(self, config: BeaconConfig):
        super().__init__()
        self.transform = BeaconPredictionHeadTransform(config)
        # The decoder weight is tied to the input embeddings; the output-only bias is tied to `bias`.
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))


class BeaconOnlyMLMHead(nn.Module):
    def __init__(self, config: BeaconConfig):
        super().__init__()
        self.predictions = BeaconLMPredictionHead(config)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.predictions(sequence_output)


class BeaconPreTrainedModel(PreTrainedModel):
    config: BeaconConfig
    base_model_prefix = "beacon"
    supports_gradient_checkpointing = True
    _no_split_modules = ["BeaconEmbeddings", "BeaconLayer"]
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": BeaconLayer, "attentions": BeaconSelfAttention}
    # The heads return a per-batch mean loss and ignore `num_items_in_batch`; without this, Trainer would take
    # `**kwargs` as a promise to normalise by it and multiply the loss by the world size under DDP.
    accepts_loss_kwargs = False

    def get_correct_attn_implementation(self, requested_attention: str | None, is_init_check: bool = False) -> str:
        """ALiBi models default to "alibi_auto": each forward picks flex, dense sdpa or blocked attention for its
        device and length (see `resolve_attention_implementation`)."""
        if requested_attention in (None, "alibi_auto") and self.config.position_embedding_type == "alibi":
            return "alibi_auto"
        return super().get_correct_attn_implementation(requested_attention, is_init_check)

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, BeaconLMPredictionHead):
            init.zeros_(module.bias)
        elif isinstance(module, BeaconAlibiBias):
            init.copy_(module.slopes, alibi_slopes(module.num_heads))
        elif isinstance(module, BeaconEmbeddings) and module.position_embeddings is not None:
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[-1]).unsqueeze(0))

    def save_pretrained(self, save_directory, is_main_process: bool = True, **kwargs):
        """Save as usual, with a config `auto_map` that names every Auto class and the code files next to the
        weights, so the folder loads with `trust_remote_code=True` without `hf_genomics`."""
        self.config.auto_map = dict(BEACON_AUTO_MAP)
        super().save_pretrained(save_directory, is_main_process=is_main_process, **kwargs)
        # Heads without a transformers Auto class are not "remote code" to transformers, so copy the files here.
        if is_main_process and not self.is_remote_code():
            custom_object_save(self, save_directory)


def attention_sequence_ids(
    attention_mask: torch.Tensor | None, position_ids: torch.Tensor | None, shape: torch.Size, device: torch.device
) -> torch.Tensor | None:
    """Which sequence each token belongs to, `(B, L)` int32: 0, 1, ... in each row, a new sequence at every token
    whose position id is 0 (packed rows, as transformers' `DataCollatorWithFlattening` makes them), -1 for padding.
    Attention stays within a sequence; padding attends only padding. None when every row is one unpadded sequence.
    """
    padding = None
    if attention_mask is not None:
        if attention_mask.shape != shape:
            raise ValueError(
                f"attention_mask must have the shape of input_ids, (batch, seq_len) = {tuple(shape)}, with 1 on tokens "
                f"and 0 on padding; got shape {tuple(attention_mask.shape)}."
            )
        padding = attention_mask.to(device) == 0
        # Dropping an all-ones mask saves the CPU paths a (B, H, L, L) bias; on CUDA the check would cost a host sync
        # per forward, and the flex path masks anyway.
        if device.type != "cuda" and not padding.any():
            padding = None
    if position_ids is None:
        return None if padding is None else -padding.int()
    if position_ids.shape != shape:
        raise ValueError(
            f"position_ids must have the shape of input_ids, {tuple(shape)}; got {tuple(position_ids.shape)}. "
            "ALiBi models read them as packing: each sequence of a row starts at position 0."
        )
    starts = position_ids.to(device) == 0
    if padding is not None:
        starts &= ~padding
    sequence_ids = starts.int().cumsum(dim=1, dtype=torch.int32) - 1
    unassigned = sequence_ids < 0
    if padding is not None:
        unassigned &= ~padding
        sequence_ids = sequence_ids.masked_fill(padding, -1)
    if unassigned.any():
        row = int(unassigned.any(dim=1).int().argmax())
        raise ValueError(
            f"Row {row} has tokens before its first position id 0: packed rows (position_ids given to an ALiBi "
            "model) must start every sequence at position 0, and tokens before the first sequence must be padding "
            "(attention_mask 0)."
        )
    return sequence_ids


def resolve_attention_implementation(
    config: BeaconConfig, device: torch.device, batch_size: int, length: int, sequence_ids: torch.Tensor | None
) -> str:
    """The path `attn_implementation="alibi_auto"` (the default of ALiBi models) takes for one forward: flex attention
    on CUDA; elsewhere the dense-bias sdpa path while its bias stays small, the blocked path above."""
    if config._attn_implementation == "flex_attention":
        return "alibi_flex"  # transformers' flex path would index the bias of head 0 for every head
    if config._attn_implementation != "alibi_auto":
        return config._attn_implementation
    if device.type == "cuda":
        return "alibi_flex"
    rows = 1 if sequence_ids is None else batch_size
    limit = DENSE_ALIBI_BIAS_MAX_ELEMENTS_TRAINING if torch.is_grad_enabled() else DENSE_ALIBI_BIAS_MAX_ELEMENTS
    if rows * config.num_attention_heads * length * length <= limit:
        return "sdpa"
    return "alibi_blocked"


def _attention_inputs(
    config: BeaconConfig,
    alibi: BeaconAlibiBias | None,
    embedding_output: torch.Tensor,
    attention_mask: torch.Tensor | None,
    sequence_ids: torch.Tensor | None,
) -> tuple[torch.Tensor | None, dict]:
    """The mask and the keyword arguments every layer's attention receives, built once per forward for the path
    this forward takes (`sequence_ids` from [`attention_sequence_ids`], ALiBi models only).

    Dense paths (`sdpa`, `eager`) get the ALiBi bias with padding and packing folded in: `(1, H, L, L)` for unpadded
    single sequences, `(B, H, L, L)` otherwise. `alibi_blocked` gets the slopes, the sequence ids and its block plan;
    `alibi_flex` the slopes and a BlockMask. Absolute-position models use transformers' padding mask.
    """
    if alibi is None:
        mask = create_bidirectional_mask(config=config, inputs_embeds=embedding_output, attention_mask=attention_mask)
        return mask, {}
    batch_size, length = embedding_output.shape[:2]
    device = embedding_output.device
    implementation = resolve_attention_implementation(config, device, batch_size, length, sequence_ids)
    kwargs = {"attention_implementation": implementation}
    if implementation == "alibi_blocked":
        plan = blocked_attention_plan(config.num_attention_heads, length, alibi.slopes, sequence_ids)
        kwargs.update(alibi_slopes=alibi.slopes, sequence_ids=sequence_ids, attention_blocks=plan)
    elif implementation == "alibi_flex":
        block_mask = flex_block_mask(sequence_ids, batch_size, length, alibi_window(alibi.slopes), device)
        kwargs.update(alibi_slopes=alibi.slopes, block_mask=block_mask)
    else:
        bias = alibi(length, embedding_output.dtype)
        if sequence_ids is not None:
            same = sequence_ids[:, :, None] == sequence_ids[:, None, :]
            bias = bias.masked_fill(~same.unsqueeze(1), torch.finfo(bias.dtype).min)
        kwargs["position_bias"] = bias
    return None, kwargs


def split_sequences(
    hidden_states: torch.Tensor, sequence_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed `(B, L, ...)` token states to one row per sequence, `(N, L_max, ...)` right-padded with zeros, and its
    `(N, L_max)` attention mask. Sequences are numbered row by row, left to right."""
    real = sequence_ids >= 0
    per_row = (sequence_ids.amax(dim=1) + 1).clamp(min=0)
    row_offsets = per_row.cumsum(0) - per_row
    first, _ = sequence_extents(sequence_ids)
    offsets = torch.arange(sequence_ids.shape[1], device=sequence_ids.device) - first
    sequence = (sequence_ids + row_offsets[:, None])[real]
    offset = offsets[real]
    num_sequences, longest = int(per_row.sum()), int(offset.max()) + 1 if offset.numel() else 0
    states = hidden_states.new_zeros(num_sequences, longest, *hidden_states.shape[2:])
    states[sequence, offset] = hidden_states[real]
    mask = torch.zeros(num_sequences, longest, dtype=torch.long, device=hidden_states.device)
    mask[sequence, offset] = 1
    return states, mask


class BeaconModel(BeaconPreTrainedModel):
    """The bare BEACON-B encoder: `last_hidden_state` and `pooler_output` = tanh(dense(h)), h the `<cls>` state or
    the sequence's mean state ([`BeaconPooler`], `config.classifier_pooling`).

    Packed rows: for ALiBi models `position_ids` mark sequences, each starting at position id 0 (as transformers'
    `DataCollatorWithFlattening` and [`DataCollatorForPacking`] make them). Attention and ALiBi distances then stay
    within each sequence, `last_hidden_state` stays packed `(B, L, hidden)`, and `pooler_output` has one row per
    sequence, `(N, hidden)`, numbered row by row, left to right. The token and pair heads return one row per
    sequence in that order.
    """

    def __init__(self, config: BeaconConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = BeaconEmbeddings(config)
        self.alibi = BeaconAlibiBias(config.num_attention_heads) if config.position_embedding_type == "alibi" else None
        self.encoder = BeaconEncoder(config)
        self.pooler = BeaconPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    @capture_outputs
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        if self.alibi is None and position_ids is not None and (position_ids[:, 1:] == 0).any():
            raise ValueError(
                "position_ids restart at 0 inside a row, i.e. packed sequences, but packing needs an ALiBi model "
                "(position_embedding_type='alibi'): this model would attend across the packed sequences."
            )
        embedding_output = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids if self.alibi is None else None,
            inputs_embeds=inputs_embeds,
        )
        sequence_ids = None
        if self.alibi is not None:
            sequence_ids = attention_sequence_ids(
                attention_mask, position_ids, embedding_output.shape[:2], embedding_output.device
            )
        mask, attention_kwargs = _attention_inputs(
            self.config, self.alibi, embedding_output, attention_mask, sequence_ids
        )
        sequence_output = self.encoder(embedding_output, mask, **attention_kwargs, **kwargs)
        pooled_output = None
        if self.pooler is not None:
            packed = position_ids is not None and self.alibi is not None
            rows, mask = split_sequences(sequence_output, sequence_ids) if packed else (sequence_output, attention_mask)
            pooled_output = self.pooler(rows, mask)
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=pooled_output)


# The dtypes `F.cross_entropy` takes as class ids.
_CLASS_ID_DTYPES = (torch.long, torch.uint8)


def _check_labels(labels, accepted: str, shapes: tuple[tuple[int, ...], ...] = (), dtypes: tuple = ()) -> None:
    """The error every head gives for labels it cannot use, before torch broadcasts them or fails inside a loss:
    `labels` must be a tensor of one of `shapes` and `dtypes` (any if empty); `accepted` says so in words."""
    if not isinstance(labels, torch.Tensor):
        problem = f"got a {type(labels).__name__}"
    elif shapes and labels.shape not in shapes:
        problem = f"got shape {tuple(labels.shape)} where {' or '.join(str(tuple(shape)) for shape in shapes)} fits"
    elif dtypes and labels.dtype not in dtypes:
        problem = f"got dtype {labels.dtype}"
    else:
        return
    raise ValueError(f"labels must be a torch.Tensor of {accepted}; {problem}.")


class BeaconForMaskedLM(BeaconPreTrainedModel):
    """BEACON-B with the BERT masked-language-modelling head (decoder tied to the input embeddings)."""

    _tied_weights_keys = {
        "cls.predictions.decoder.weight": "beacon.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.bias": "cls.predictions.bias",
    }

    def __init__(self, config: BeaconConfig):
        super().__init__(config)
        self.beacon = BeaconModel(config, add_pooling_layer=False)
        self.cls = BeaconOnlyMLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings):
        self.cls.predictions.decoder = new_embeddings
        self.cls.predictions.bias = new_embeddings.bias

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        r"""labels: `(batch, seq_len)` token ids to predict, -100 where no loss is taken."""
        outputs = self.beacon(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.cls(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            _check_labels(
                labels,
                "int64 token ids, shape (batch, seq_len), -100 where no loss is taken",
                (logits.shape[:2],),
                _CLASS_ID_DTYPES,
            )
            loss = F.cross_entropy(logits.view(-1, self.config.vocab_size), labels.view(-1).to(logits.device))
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions)


def _resolve_problem_type(config: BeaconConfig, labels: torch.Tensor) -> str:
    """`config.problem_type`, inferred from the labels the first time as transformers' own heads do."""
    if config.problem_type is None:
        if config.num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    return config.problem_type


def _sequence_loss(config: BeaconConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sequence loss from `config.problem_type`: MSE, cross-entropy or multi-label BCE."""
    # The type first: the problem type is inferred from the labels' dtype (and then kept in the config).
    _check_labels(
        labels,
        "shape (batch,) int64 class ids, (batch, num_labels) multi-hot targets or (batch,) / (batch, num_labels) "
        "regression targets, as config.problem_type says",
    )
    problem_type = _resolve_problem_type(config, labels)
    batch_size, num_labels = logits.shape
    one_per_sequence = ((batch_size,), (batch_size, 1))
    if problem_type == "single_label_classification":
        _check_labels(labels, "int64 class ids, shape (batch,)", one_per_sequence, _CLASS_ID_DTYPES)
    elif problem_type == "regression" and num_labels == 1:
        _check_labels(labels, "regression targets, shape (batch,)", one_per_sequence)
    else:
        _check_labels(labels, f"{problem_type} targets, shape (batch, num_labels={num_labels})", (logits.shape,))
    labels = labels.to(logits.device)
    if problem_type == "regression":
        if config.num_labels == 1:
            return F.mse_loss(logits.view(-1), labels.to(logits.dtype).view(-1))
        return F.mse_loss(logits, labels.to(logits.dtype))
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def _classifier_dropout(config: BeaconConfig) -> float:
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


class BeaconForSequenceClassification(BeaconPreTrainedModel):
    """BEACON-B with a linear `classifier` on the pooled state (`<cls>` or mean, `config.classifier_pooling`):
    single-label classification, multi-label classification or regression, chosen by `config.problem_type` (as
    transformers' BERT)."""

    def __init__(self, config: BeaconConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.beacon = BeaconModel(config)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        r"""labels: `(batch,)` class ids, `(batch, num_labels)` multi-hot floats, or `(batch,)` /
        `(batch, num_labels)` regression targets."""
        outputs = self.beacon(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = _sequence_loss(self.config, logits, labels) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def _sequence_rows(
    model: BeaconModel, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None, position_ids
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token states and mask with one row per sequence: as given, unless the batch is packed (see [`BeaconModel`])."""
    if position_ids is None or model.alibi is None:
        return hidden_states, attention_mask
    sequence_ids = attention_sequence_ids(attention_mask, position_ids, hidden_states.shape[:2], hidden_states.device)
    return split_sequences(hidden_states, sequence_ids)


def _nucleotide_mask(
    attention_mask: torch.Tensor | None, batch_size: int, seq_length: int, device: torch.device
) -> torch.Tensor:
    """`(B, L)`, True at the nucleotides of each row: every non-padding token except the first and the last
    (`<cls>` and `<eos>` / `[CLS]` and `[SEP]`), with right or left padding."""
    if seq_length < 2:
        raise ValueError(f"Inputs need at least the two special tokens around the sequence, got length {seq_length}.")
    if attention_mask is None:
        attention_mask = torch.ones(batch_size, seq_length, dtype=torch.bool, device=device)
    attention_mask = attention_mask.to(device).bool()
    positions = torch.arange(seq_length, device=device)
    first = attention_mask.int().argmax(dim=1, keepdim=True)
    last = seq_length - 1 - attention_mask.flip(1).int().argmax(dim=1, keepdim=True)
    return attention_mask & (positions > first) & (positions < last)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` is True; 0 (still attached to the graph) when nothing is left."""
    values = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return values.sum() / mask.sum().clamp(min=1)


def _token_loss(config: BeaconConfig, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token loss from `config.problem_type`: cross-entropy, regression MSE or multi-label BCE, skipping labels
    equal to -100 (special tokens, padding, unlabelled nucleotides)."""
    batch_size, seq_length, num_labels = logits.shape
    accepted = f"shape (batch, seq_len) = {(batch_size, seq_length)}, aligned with input_ids"
    _check_labels(labels, f"int64 class ids or float targets (trailing num_labels dimension), {accepted}")
    problem_type = _resolve_problem_type(config, labels)
    if problem_type == "single_label_classification":
        _check_labels(labels, f"int64 class ids, {accepted}", ((batch_size, seq_length),), _CLASS_ID_DTYPES)
        keep = labels.to(logits.device) != -100
        safe_labels = torch.where(keep, labels.to(logits.device), 0).flatten()
        per_token = F.cross_entropy(logits.flatten(0, 1), safe_labels, reduction="none").view_as(keep)
        return _masked_mean(per_token, keep)
    shapes = ((batch_size, seq_length, num_labels),) + (((batch_size, seq_length),) if num_labels == 1 else ())
    _check_labels(labels, f"{problem_type} targets, {accepted} (by num_labels={num_labels})", shapes)
    labels = labels.to(device=logits.device, dtype=logits.dtype).view_as(logits)
    keep = labels != -100
    safe_labels = torch.where(keep, labels, torch.zeros((), dtype=labels.dtype, device=labels.device))
    if problem_type == "regression":
        per_element = (logits - safe_labels).square()
    else:
        per_element = F.binary_cross_entropy_with_logits(logits, safe_labels, reduction="none")
    return _masked_mean(per_element, keep)


class BeaconForTokenClassification(BeaconPreTrainedModel):
    """BEACON-B with a linear `classifier` on every token (splice sites, degradation, structure scores).

    As in transformers' token-classification heads, `logits` is `(batch, seq_len, num_labels)`, aligned with
    `input_ids`, and labels are `(batch, seq_len)` (or `(..., num_labels)` floats) with -100 where no loss is taken:
    `<cls>`, `<eos>`, padding and unlabelled nucleotides (`DataCollatorForBeacon` lays them out so).
    `config.problem_type` picks cross-entropy, regression MSE or multi-label BCE.
    """

    def __init__(self, config: BeaconConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.beacon = BeaconModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput:
        r"""labels: `(batch, seq_len)` aligned with `input_ids`, -100 where no loss is taken; `(..., num_labels)`
        floats for multi-target regression."""
        outputs = self.beacon(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        hidden_states, _ = _sequence_rows(self.beacon, outputs.last_hidden_state, attention_mask, position_ids)
        logits = self.classifier(self.dropout(hidden_states))
        loss = _token_loss(self.config, logits, labels) if labels is not None else None
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class BeaconPairwiseLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a `(B, C, L, L)` map, at every (i, j)."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return super().forward(hidden_states.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class BeaconPairwiseResidualBlock(nn.Module):
    """Pre-activation residual block of BEACON's 2-D ResNet: (LN, ReLU, dropout, conv3x3) then
    (LN, ReLU, dropout, conv5x5), plus the identity."""

    def __init__(self, config: BeaconConfig):
        super().__init__()
        channels = config.pairwise_channels
        self.norm1 = BeaconPairwiseLayerNorm(channels)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.norm2 = BeaconPairwiseLayerNorm(channels)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=5, padding=2, bias=False)
        self.dropout = nn.Dropout(config.pairwise_dropout)

    def forward(self, hidden_states: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        residual = hidden_states
        hidden_states = self.conv1(self.dropout(F.relu(self.norm1(hidden_states))) * pair_mask)
        hidden_states = self.conv2(self.dropout(F.relu(self.norm2(hidden_states))) * pair_mask)
        return hidden_states + residual


class BeaconPairwiseHead(nn.Module):
    """BEACON's pair predictor: the outer product h_i * h_j of token states (hidden_size channels per pair),
    a 3x3 input convolution, `pairwise_num_blocks` residual blocks, then LN, ReLU and a linear map to one logit.
    Every convolution sees zeros outside the sequence, so a sequence gets the same map alone or in a padded batch."""

    def __init__(self, config: BeaconConfig):
        super().__init__()
        self.input_conv = nn.Conv2d(config.hidden_size, config.pairwise_channels, kernel_size=3, padding=1)
        self.blocks = nn.ModuleList([BeaconPairwiseResidualBlock(config) for _ in range(config.pairwise_num_blocks)])
        self.norm = BeaconPairwiseLayerNorm(config.pairwise_channels)
        self.output = nn.Linear(config.pairwise_channels, 1)

    def forward(self, token_states: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        pair_mask = (valid[:, None, :, None] & valid[:, None, None, :]).to(token_states.dtype)
        pair_features = torch.einsum("bih,bjh->bhij", token_states, token_states)
        hidden_states = self.input_conv(pair_features * pair_mask)
        for block in self.blocks:
            hidden_states = block(hidden_states, pair_mask)
        hidden_states = F.relu(self.norm(hidden_states))
        logits = self.output(hidden_states.permute(0, 2, 3, 1)).squeeze(-1)
        # Pairing, contact and distance are symmetric relations; the convolutions are not.
        return (logits + logits.transpose(1, 2)) / 2


@dataclass
class PairwisePredictionOutput(ModelOutput):
    """Output of [`BeaconForPairwisePrediction`]: `logits` `(batch, seq_len, seq_len)` over token pairs."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class BeaconForPairwisePrediction(BeaconPreTrainedModel):
    """BEACON-B for nucleotide-pair maps (secondary structure, contact map, distance map).

    `logits` is `(batch, seq_len, seq_len)`, symmetric, aligned with `input_ids` on both axes; the pair head sees
    only the nucleotides (special tokens and padding are zeroed before every convolution, so cell (i, j) is the one
    BEACON computes on the nucleotides alone). Labels are `(batch, seq_len, seq_len)` with -100 where there is no
    label (special tokens, padding); `problem_type="regression"` gives MSE (distance maps), anything else binary
    cross-entropy on logits (positive pairs weighted by `config.pairwise_pos_weight` when it is set).
    """

    def __init__(self, config: BeaconConfig):
        super().__init__(config)
        self.beacon = BeaconModel(config, add_pooling_layer=False)
        self.classifier = BeaconPairwiseHead(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> PairwisePredictionOutput:
        outputs = self.beacon(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        hidden_states, attention_mask = _sequence_rows(
            self.beacon, outputs.last_hidden_state, attention_mask, position_ids
        )
        batch_size, seq_length = hidden_states.shape[:2]
        logits = self.classifier(
            hidden_states, _nucleotide_mask(attention_mask, batch_size, seq_length, hidden_states.device)
        )
        loss = None
        if labels is not None:
            _check_labels(labels, "pair labels, shape (batch, seq_len, seq_len), -100 where there is none",
                          (logits.shape,))
            labels = labels.to(device=logits.device, dtype=logits.dtype)
            keep = labels != -100
            safe_labels = torch.where(keep, labels, torch.zeros((), dtype=labels.dtype, device=labels.device))
            if self.config.problem_type == "regression":
                per_pair = (logits - safe_labels).square()
            else:
                weight = self.config.pairwise_pos_weight
                pos_weight = None if weight is None else logits.new_tensor(weight)
                per_pair = F.binary_cross_entropy_with_logits(
                    logits, safe_labels, reduction="none", pos_weight=pos_weight
                )
            loss = _masked_mean(per_pair, keep)
        return PairwisePredictionOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class BeaconForSequencePairClassification(BeaconPreTrainedModel):
    """BEACON-B for two separate inputs (e.g. sgRNA and off-target DNA, BEACON's CRI-Off task): one shared
    encoder runs on each, and the `classifier` sees the two pooled states concatenated `[pooled_a; pooled_b]`.

    The first input is `input_ids` / `attention_mask` / `token_type_ids` (so tokenizer output unpacks as usual),
    the second `input_ids_b` / `attention_mask_b` / `token_type_ids_b`. Losses follow `config.problem_type` as in
    [`BeaconForSequenceClassification`].
    """

    def __init__(self, config: BeaconConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.beacon = BeaconModel(config)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(2 * config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        input_ids_b: torch.Tensor | None = None,
        attention_mask_b: torch.Tensor | None = None,
        token_type_ids_b: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        inputs_embeds_b: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        if input_ids_b is None and inputs_embeds_b is None:
            raise ValueError("BeaconForSequencePairClassification needs the second input: `input_ids_b`.")
        pooled = torch.cat(
            [
                self.beacon(ids, attention_mask=mask, token_type_ids=types, inputs_embeds=embeds, **kwargs).pooler_output
                for ids, mask, types, embeds in (
                    (input_ids, attention_mask, token_type_ids, inputs_embeds),
                    (input_ids_b, attention_mask_b, token_type_ids_b, inputs_embeds_b),
                )
            ],
            dim=-1,
        )
        logits = self.classifier(self.dropout(pooled))
        loss = _sequence_loss(self.config, logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


__all__ = [
    "BeaconForMaskedLM",
    "BeaconForPairwisePrediction",
    "BeaconForSequenceClassification",
    "BeaconForSequencePairClassification",
    "BeaconForTokenClassification",
    "BeaconModel",
    "BeaconPreTrainedModel",
    "alibi_slopes",
]
