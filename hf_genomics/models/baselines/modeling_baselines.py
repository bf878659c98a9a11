"""BEACON's naive baselines (Ren et al., 2024): CNN, ResNet and BiLSTM sequence classifiers trained from scratch.

Every encoder keeps padded positions at exactly zero and pools only over real tokens, so a sequence gives the
same logits whatever padding it is batched with (the ResNet's BatchNorm also takes its batch statistics from
real tokens only).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_baselines import BaselineConfig


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` on ``(batch, channels, length)`` whose statistics come from unmasked positions only."""

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = hidden.transpose(1, 2)  # (B, L, C): the mask selects rows
        out = torch.zeros_like(hidden)
        out[mask] = super().forward(hidden[mask])
        return out.transpose(1, 2)


class CNNEncoder(nn.Module):
    """``num_layers`` x (Conv1d 'same' + ReLU), zeroing padded positions after each layer."""

    def __init__(self, config: BaselineConfig):
        super().__init__()
        sizes = [config.embedding_dim] + [config.hidden_size] * config.num_layers
        self.convs = nn.ModuleList(
            nn.Conv1d(n_in, n_out, config.kernel_size, padding=config.kernel_size // 2)
            for n_in, n_out in zip(sizes[:-1], sizes[1:])
        )

    def forward(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden, keep = embeddings.transpose(1, 2), mask.unsqueeze(1)
        for conv in self.convs:
            hidden = torch.relu(conv(hidden)) * keep
        return hidden.transpose(1, 2)


class ResidualBlock(nn.Module):
    """Conv-BN-ReLU-Conv-BN plus identity, then ReLU (He et al., 2016), in 1-D and padding-aware."""

    def __init__(self, config: BaselineConfig):
        super().__init__()
        channels, width = config.hidden_size, config.kernel_size
        self.conv1 = nn.Conv1d(channels, channels, width, padding=width // 2, bias=False)
        self.norm1 = MaskedBatchNorm1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, width, padding=width // 2, bias=False)
        self.norm2 = MaskedBatchNorm1d(channels)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(hidden), mask))
        out = self.norm2(self.conv2(out), mask)
        return torch.relu(out + hidden)


class ResNetEncoder(nn.Module):
    """A Conv1d stem to ``hidden_size`` channels, then ``num_layers`` :class:`ResidualBlock`s."""

    def __init__(self, config: BaselineConfig):
        super().__init__()
        self.stem = nn.Conv1d(config.embedding_dim, config.hidden_size, config.kernel_size,
                              padding=config.kernel_size // 2)
        self.blocks = nn.ModuleList(ResidualBlock(config) for _ in range(config.num_layers))

    def forward(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(1)
        hidden = torch.relu(self.stem(embeddings.transpose(1, 2))) * keep
        for block in self.blocks:
            hidden = block(hidden, mask)
        return hidden.transpose(1, 2)


class BiLSTMEncoder(nn.Module):
    """A bidirectional LSTM run on packed sequences, so the backward direction starts at each real end."""

    def __init__(self, config: BaselineConfig):
        super().__init__()
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden_size, num_layers=config.num_layers,
                            batch_first=True, bidirectional=True)

    def forward(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(embeddings, lengths, batch_first=True, enforce_sorted=False)
        hidden, _ = self.lstm(packed)
        hidden, _ = nn.utils.rnn.pad_packed_sequence(hidden, batch_first=True, total_length=embeddings.shape[1])
        return hidden


ENCODERS = {"cnn": CNNEncoder, "resnet": ResNetEncoder, "bilstm": BiLSTMEncoder}


class BaselinePreTrainedModel(PreTrainedModel):
    config: BaselineConfig
    config_class = BaselineConfig
    base_model_prefix = "baseline"
    main_input_name = "input_ids"
    # The loss is a per-batch mean that ignores `num_items_in_batch`: Trainer must not rescale it (see Beacon).
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module):
        # Without attention or LayerNorm, a plain CNN needs He initialisation to keep its activations alive.
        if isinstance(module, nn.Conv1d):
            init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        else:
            super()._init_weights(module)


class BaselineForSequenceClassification(BaselinePreTrainedModel):
    """Embedding -> CNN / ResNet / BiLSTM -> masked global max pool -> dropout -> ``classifier``.

    The loss follows ``config.problem_type`` (regression, single- or multi-label classification), as in
    ``BertForSequenceClassification``.

    >>> model = BaselineForSequenceClassification(BaselineConfig(architecture="cnn", num_labels=3, hidden_size=8))
    >>> ids = torch.tensor([[0, 4, 5, 6, 7, 2, 1, 1]])
    >>> model(input_ids=ids, attention_mask=(ids != 1).long()).logits.shape
    torch.Size([1, 3])
    """

    def __init__(self, config: BaselineConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.encoder = ENCODERS[config.architecture](config)
        pooled_size = config.hidden_size * (2 if config.architecture == "bilstm" else 1)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(pooled_size, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        if attention_mask is None:
            if input_ids is None:
                raise ValueError("inputs_embeds needs an attention_mask (which positions are real tokens).")
            attention_mask = input_ids != self.config.pad_token_id
        mask = attention_mask.bool()
        if not mask.any(dim=1).all():
            raise ValueError("Every sequence needs at least one unmasked token; got an all-padding row.")
        embeddings = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        hidden = self.encoder(embeddings * mask.unsqueeze(-1), mask)
        pooled = hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = self.loss_function(labels, logits, self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits)


__all__ = ["BaselinePreTrainedModel", "BaselineForSequenceClassification"]
