"""PyTorch BEACON-B model: a post-LayerNorm BERT encoder with symmetric ALiBi attention biases.

This file imports only torch and transformers (plus the configuration next to it) so that a saved folder loads
with `trust_remote_code=True` on machines without `hf_genomics`.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
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
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple, logging
from transformers.utils.output_capturing import capture_outputs

from .configuration_beacon import BeaconConfig

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


class BeaconAlibiBias(nn.Module):
    """Symmetric ALiBi bias `-slope_h * |i - j|` as used by BEACON-B (following MosaicBERT's bidirectional form).

    Returns a `(1, heads, L, L)` tensor: built once per forward, shared by every layer and broadcast over the batch,
    so it costs O(heads * L^2) memory for any batch size and any length (no maximum length).

    Biases below `-negligible_bias` (default 60) are masked (`-inf`): there the ALiBi factor `exp(bias)` is under
    1e-26, so those keys only count if their attention logit beats the query's own by more than ~44. Kept, they
    fill softmax and its backward with denormal floats, which x86 CPUs process many times slower (a 6x384 model
    then trains at 0.70-0.78x BERT's speed instead of ~1x; `benchmarks/bench_model.py`). Head h thus sees
    `negligible_bias / slope_h` tokens each way: 15,360 for the flattest of 12 heads.
    """

    negligible_bias = 60.0

    def __init__(self, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.slopes = nn.Buffer(alibi_slopes(num_heads), persistent=False)

    def forward(self, seq_length: int, dtype: torch.dtype) -> torch.Tensor:
        # float32 whatever the model dtype: bfloat16 cannot count positions beyond 256 exactly.
        positions = torch.arange(seq_length, device=self.slopes.device, dtype=torch.float32)
        distance = (positions[None, :] - positions[:, None]).abs_()
        bias = distance * -self.slopes.float()[:, None, None]
        bias.masked_fill_(bias < -self.negligible_bias, float("-inf"))
        return bias.to(dtype).unsqueeze(0)


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

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
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
    """tanh(dense(h_cls)): the first token's final state, as in BERT and BEACON-B."""

    def __init__(self, config: BeaconConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


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


def _attention_inputs(
    config: BeaconConfig,
    alibi: BeaconAlibiBias | None,
    embedding_output: torch.Tensor,
    attention_mask: torch.Tensor | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The (mask, position bias) pair every layer receives, built once per forward.

    Without padding the bias stays `(1, H, L, L)`. With padding, a backend that takes a single tensor mask (eager,
    sdpa) gets the padding folded into the bias once (`(B, H, L, L)`, shared by all layers, instead of each layer
    merging them again); flex attention keeps its block mask and indexes the bias per batch row, so it gets the
    bias expanded to the batch.
    """
    mask = create_bidirectional_mask(config=config, inputs_embeds=embedding_output, attention_mask=attention_mask)
    if alibi is None:
        return mask, None
    bias = alibi(embedding_output.shape[1], embedding_output.dtype)
    if mask is None:
        return None, bias
    if isinstance(mask, torch.Tensor):
        if mask.dtype == torch.bool:
            return None, bias.masked_fill(~mask, torch.finfo(bias.dtype).min)
        return None, bias + mask
    return mask, bias.expand(embedding_output.shape[0], -1, -1, -1)


class BeaconModel(BeaconPreTrainedModel):
    """The bare BEACON-B encoder: `last_hidden_state` and `pooler_output` = tanh(dense(h_cls))."""

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
        if position_ids is not None and self.alibi is not None:
            raise ValueError("`position_ids` are not used by ALiBi models (position_embedding_type='alibi').")
        embedding_output = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
        )
        mask, position_bias = _attention_inputs(self.config, self.alibi, embedding_output, attention_mask)
        sequence_output = self.encoder(embedding_output, mask, position_bias=position_bias, **kwargs)
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
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
    """BEACON-B with a linear `classifier` on the pooled `<cls>` state: single-label classification,
    multi-label classification or regression, chosen by `config.problem_type` (as transformers' BERT)."""

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


def _drop_special_tokens(
    attention_mask: torch.Tensor | None, batch_size: int, seq_length: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the nucleotides in each row: every non-padding token except the first and the last
    (`<cls>` and `<eos>` / `[CLS]` and `[SEP]`), left-aligned.

    Returns `index` `(B, L - 2)` into the token axis and `valid` `(B, L - 2)`, True where the row has a nucleotide.
    With right padding `index` is simply `1 .. L - 2` (the `[:, 1:-1]` slice BEACON uses); left padding is handled
    by starting each row at its first non-padding token.
    """
    if seq_length < 2:
        raise ValueError(f"Inputs need at least the two special tokens around the sequence, got length {seq_length}.")
    offsets = torch.arange(seq_length - 2, device=device)
    if attention_mask is None:
        index = (offsets + 1).expand(batch_size, -1)
        return index, torch.ones_like(index, dtype=torch.bool)
    attention_mask = attention_mask.to(device).bool()
    first = attention_mask.int().argmax(dim=1)
    lengths = attention_mask.sum(dim=1)
    index = (first[:, None] + 1 + offsets).clamp(max=seq_length - 1)
    return index, offsets[None, :] < (lengths - 2)[:, None]


def _gather_positions(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`values[b, index[b, t], ...]` for a `(B, L, ...)` tensor."""
    expanded = index.view(*index.shape, *([1] * (values.dim() - 2))).expand(*index.shape, *values.shape[2:])
    return values.gather(1, expanded)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` is True; 0 (still attached to the graph) when nothing is left."""
    values = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return values.sum() / mask.sum().clamp(min=1)


def _token_loss(
    config: BeaconConfig, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Per-nucleotide loss from `config.problem_type`, skipping positions that are not nucleotides, labels -100
    and (regression) NaN.

    Labels given per nucleotide (`L - 2` long) are used as is; labels aligned with the tokens (`L` long, e.g. from
    `DataCollatorForTokenClassification`) are gathered like the hidden states.
    """
    accepted = "shape (batch, L - 2) (one per nucleotide) or (batch, L) (aligned with input_ids)"
    _check_labels(labels, f"int64 class ids or float targets (trailing num_labels dimension), {accepted}")
    problem_type = _resolve_problem_type(config, labels)
    batch_size, num_nucleotides, num_labels = logits.shape
    lengths = (num_nucleotides, num_nucleotides + 2)
    if problem_type == "single_label_classification":
        _check_labels(labels, f"int64 class ids, {accepted}", tuple((batch_size, n) for n in lengths), _CLASS_ID_DTYPES)
    else:
        shapes = tuple((batch_size, n, num_labels) for n in lengths)
        if num_labels == 1:
            shapes += tuple((batch_size, n) for n in lengths)
        _check_labels(labels, f"{problem_type} targets, {accepted} by num_labels={num_labels}", shapes)
    if labels.shape[1] != num_nucleotides:
        labels = _gather_positions(labels, index.to(labels.device))
    labels = labels.to(logits.device)
    if problem_type == "single_label_classification":
        keep = valid & (labels != -100)
        safe_labels = torch.where(keep, labels, 0).flatten()
        per_token = F.cross_entropy(logits.flatten(0, 1), safe_labels, reduction="none").view_as(keep)
        return _masked_mean(per_token, keep)
    if labels.dim() == 2:
        labels = labels.unsqueeze(-1)
    labels = labels.to(logits.dtype)
    keep = valid.unsqueeze(-1) & (labels != -100) & ~labels.isnan()
    safe_labels = torch.where(keep, labels, torch.zeros((), dtype=labels.dtype, device=labels.device))
    if problem_type == "regression":
        per_element = (logits - safe_labels).square()
    else:
        per_element = F.binary_cross_entropy_with_logits(logits, safe_labels, reduction="none")
    return _masked_mean(per_element, keep.expand_as(per_element))


class BeaconForTokenClassification(BeaconPreTrainedModel):
    """BEACON-B with a linear `classifier` on every nucleotide (splice sites, degradation, structure scores).

    Outputs have one row per nucleotide: the first and last non-padding token of each row (`<cls>`, `<eos>`) are
    dropped, so `logits` is `(batch, seq_len - 2, num_labels)` and `logits[b, t]` is nucleotide `t` of row `b`;
    for rows shorter than the longest, the tail `t >= row_length - 2` is padding (no loss is taken there).
    `config.problem_type` picks cross-entropy (labels -100 ignored), regression MSE (labels -100 or NaN ignored) or
    multi-label BCE.
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
        r"""labels: `(batch, seq_len - 2)` per nucleotide or `(batch, seq_len)` aligned with `input_ids`
        (special-token columns are then dropped); `(..., num_labels)` floats for multi-target regression."""
        outputs = self.beacon(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        batch_size, seq_length = hidden_states.shape[:2]
        index, valid = _drop_special_tokens(attention_mask, batch_size, seq_length, hidden_states.device)
        logits = self.classifier(self.dropout(_gather_positions(hidden_states, index)))
        loss = None
        if labels is not None:
            loss = _token_loss(self.config, logits, labels, index, valid)
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

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = hidden_states
        hidden_states = self.conv1(self.dropout(F.relu(self.norm1(hidden_states))))
        hidden_states = self.conv2(self.dropout(F.relu(self.norm2(hidden_states))))
        return hidden_states + residual


class BeaconPairwiseHead(nn.Module):
    """BEACON's pair predictor: the outer product h_i * h_j of token states (hidden_size channels per pair),
    a 3x3 input convolution, `pairwise_num_blocks` residual blocks, then LN, ReLU and a linear map to one logit."""

    def __init__(self, config: BeaconConfig):
        super().__init__()
        self.input_conv = nn.Conv2d(config.hidden_size, config.pairwise_channels, kernel_size=3, padding=1)
        self.blocks = nn.ModuleList([BeaconPairwiseResidualBlock(config) for _ in range(config.pairwise_num_blocks)])
        self.norm = BeaconPairwiseLayerNorm(config.pairwise_channels)
        self.output = nn.Linear(config.pairwise_channels, 1)

    def forward(self, token_states: torch.Tensor) -> torch.Tensor:
        pair_features = torch.einsum("bih,bjh->bhij", token_states, token_states)
        hidden_states = self.input_conv(pair_features)
        for block in self.blocks:
            hidden_states = block(hidden_states)
        hidden_states = F.relu(self.norm(hidden_states))
        logits = self.output(hidden_states.permute(0, 2, 3, 1)).squeeze(-1)
        # Pairing, contact and distance are symmetric relations; the convolutions are not.
        return (logits + logits.transpose(1, 2)) / 2


@dataclass
class PairwisePredictionOutput(ModelOutput):
    """Output of [`BeaconForPairwisePrediction`]: `logits` `(batch, L_nt, L_nt)` over nucleotide pairs."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class BeaconForPairwisePrediction(BeaconPreTrainedModel):
    """BEACON-B for nucleotide-pair maps (secondary structure, contact map, distance map).

    Special tokens are dropped as in [`BeaconForTokenClassification`], so `logits` is `(batch, L_nt, L_nt)`
    with `L_nt = seq_len - 2`, symmetric. Labels are `(batch, L_nt, L_nt)` with -1 (or NaN) where there is no
    label; `problem_type="regression"` gives MSE (distance maps), anything else binary cross-entropy on logits
    (positive pairs weighted by `config.pairwise_pos_weight` when it is set).
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
        hidden_states = outputs.last_hidden_state
        batch_size, seq_length = hidden_states.shape[:2]
        index, valid = _drop_special_tokens(attention_mask, batch_size, seq_length, hidden_states.device)
        logits = self.classifier(_gather_positions(hidden_states, index))
        loss = None
        if labels is not None:
            _check_labels(labels, "pair labels, shape (batch, L_nt, L_nt), -1 where there is none", (logits.shape,))
            labels = labels.to(device=logits.device, dtype=logits.dtype)
            keep = (labels != -1) & ~labels.isnan() & valid[:, :, None] & valid[:, None, :]
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
