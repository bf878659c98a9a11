"""BEACON-B model configuration."""

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

POSITION_EMBEDDING_TYPES = ("alibi", "absolute")
CLASSIFIER_POOLING_TYPES = ("cls", "mean")


class BeaconConfig(PreTrainedConfig):
    r"""
    Configuration of a BEACON-B encoder (Ren et al., 2024, "BEACON: Benchmark for Comprehensive RNA Tasks and
    Language Models"): a post-LayerNorm BERT whose positions come from symmetric ALiBi attention biases instead of
    position embeddings. The defaults are BEACON-B itself (12 layers, hidden 768, 12 heads, FFN 3072, GELU, the
    10-token single-nucleotide vocabulary). `position_embedding_type="absolute"` with `max_position_embeddings`
    gives a BERT with learned positions (DNABERT-style k-mer models).

    Head options: `classifier_pooling`, what the sequence-level heads pool before `tanh(dense(.))`: `"cls"` (the
    `<cls>` state, as BERT and BEACON-B) or `"mean"` (the mean over each sequence's tokens, `<cls>` and `<eos>`
    included, as ModernBERT's `classifier_pooling="mean"`); `classifier_dropout` (sequence, token and pair heads;
    defaults to `hidden_dropout_prob`) and the 2-D ResNet of [`BeaconForPairwisePrediction`]: `pairwise_channels`,
    `pairwise_num_blocks`, `pairwise_dropout`, and `pairwise_pos_weight`, the weight of positive pairs in its binary
    cross-entropy (BEACON: none, i.e. 1; a secondary-structure map has about one pair per hundred cells, and short
    runs otherwise predict no pair at all).

    Example:

    ```python
    >>> from hf_genomics import BeaconConfig, BeaconModel
    >>> config = BeaconConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128)
    >>> model = BeaconModel(config)
    >>> model.config.position_embedding_type
    'alibi'

    ```
    """

    model_type = "beacon"

    vocab_size: int = 10
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    position_embedding_type: str = "alibi"
    max_position_embeddings: int | None = None
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int | None = 1
    classifier_pooling: str = "cls"
    classifier_dropout: float | None = None
    pairwise_channels: int = 48
    pairwise_num_blocks: int = 16
    pairwise_dropout: float = 0.25
    pairwise_pos_weight: float | None = None
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        self._check_fields()
        super().__post_init__(**kwargs)

    def _check_fields(self):
        positive_ints = (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "type_vocab_size",
            "pairwise_channels",
            "pairwise_num_blocks",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `num_attention_heads` "
                f"({self.num_attention_heads})."
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "pairwise_dropout", "classifier_dropout"):
            value = getattr(self, name)
            if value is None and name == "classifier_dropout":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be a probability in [0, 1), got {value!r}.")
        weight = self.pairwise_pos_weight
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0):
            raise ValueError(f"`pairwise_pos_weight` must be None or a positive number, got {weight!r}.")
        if self.hidden_act not in ACT2FN:
            raise ValueError(f"`hidden_act` must be one of {sorted(ACT2FN)}, got {self.hidden_act!r}.")
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"`position_embedding_type` must be one of {POSITION_EMBEDDING_TYPES}, "
                f"got {self.position_embedding_type!r}."
            )
        if self.classifier_pooling not in CLASSIFIER_POOLING_TYPES:
            raise ValueError(
                f"`classifier_pooling` must be one of {CLASSIFIER_POOLING_TYPES}, got {self.classifier_pooling!r}."
            )
        if self.position_embedding_type == "absolute":
            if not isinstance(self.max_position_embeddings, int) or self.max_position_embeddings < 1:
                raise ValueError(
                    '`position_embedding_type="absolute"` needs `max_position_embeddings` (a positive integer), '
                    f"got {self.max_position_embeddings!r}."
                )
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"`pad_token_id` ({self.pad_token_id}) must be None or an id in [0, vocab_size={self.vocab_size})."
            )
        if not isinstance(self.layer_norm_eps, (int, float)) or self.layer_norm_eps <= 0:
            raise ValueError(f"`layer_norm_eps` must be a positive number, got {self.layer_norm_eps!r}.")


__all__ = ["BeaconConfig"]
