"""Configuration of the BEACON naive baselines (CNN, ResNet, BiLSTM)."""

from transformers import PreTrainedConfig

ARCHITECTURES = ("cnn", "resnet", "bilstm")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


class BaselineConfig(PreTrainedConfig):
    """Configuration of a [`BaselineForSequenceClassification`].

    Args:
        architecture: ``"cnn"`` (``num_layers`` Conv1d + ReLU, global max pool), ``"resnet"`` (a Conv1d stem
            then ``num_layers`` residual blocks of two Conv1d + BatchNorm) or ``"bilstm"`` (a
            ``num_layers``-layer bidirectional LSTM).
        vocab_size: number of token ids (10 for `NucleotideTokenizer`).
        embedding_dim: size of the token embedding.
        hidden_size: convolution channels (cnn, resnet) or LSTM units per direction (bilstm).
        kernel_size: odd convolution width (cnn, resnet).
        num_layers: convolution layers, residual blocks or LSTM layers.
        dropout: dropout before the classifier.
        pad_token_id: id of the padding token; its positions are masked everywhere.

    >>> config = BaselineConfig(architecture="cnn", num_labels=13)
    >>> config.model_type, config.hidden_size
    ('nucleotide_baseline', 128)
    """

    model_type = "nucleotide_baseline"

    def __init__(
        self,
        architecture: str = "cnn",
        vocab_size: int = 10,
        embedding_dim: int = 64,
        hidden_size: int = 128,
        kernel_size: int = 9,
        num_layers: int = 3,
        dropout: float = 0.1,
        pad_token_id: int = 1,
        **kwargs,
    ):
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}.")
        for name, value in (("vocab_size", vocab_size), ("embedding_dim", embedding_dim),
                            ("hidden_size", hidden_size), ("kernel_size", kernel_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd so that 'same' padding keeps the length, got {kernel_size}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        if not 0 <= pad_token_id < vocab_size:
            raise ValueError(f"pad_token_id must be a valid id in [0, {vocab_size}), got {pad_token_id}.")
        problem_type = kwargs.get("problem_type")
        if problem_type is not None and problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES} or None, got {problem_type!r}.")
        self.architecture = architecture
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.kernel_size = kernel_size
        self.num_layers = num_layers
        self.dropout = dropout
        super().__init__(pad_token_id=pad_token_id, **kwargs)


__all__ = ["BaselineConfig"]
