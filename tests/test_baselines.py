"""BEACON naive baselines: losses per problem_type, padding invariance, Auto* round trip, config errors."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForSequenceClassification

from hf_genomics import BaselineConfig, BaselineForSequenceClassification, NucleotideTokenizer
from hf_genomics.io.fasta import read_fasta

ARCHITECTURES = ["cnn", "resnet", "bilstm"]


@pytest.fixture(scope="module")
def batch(data_dir):
    """Four real nRC sequences (cut to 20-50 nt so the batch needs padding), tokenized and padded."""
    records = read_fasta(data_dir / "nrc_ncrna" / "dataset_Rfam_validated_2600_13classes.fasta")
    sequences = [seq[:length] for (_, seq), length in zip(records, (50, 20, 35, 42))]
    return NucleotideTokenizer()(sequences, padding=True, return_tensors="pt")


def tiny(architecture, **kwargs):
    torch.manual_seed(0)
    config = BaselineConfig(architecture=architecture, embedding_dim=8, hidden_size=12, kernel_size=5,
                            num_layers=2, dropout=0.0, **kwargs)
    return BaselineForSequenceClassification(config)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("problem_type", ["single_label_classification", "multi_label_classification", "regression"])
def test_loss_matches_reference_and_backpropagates(batch, architecture, problem_type):
    model = tiny(architecture, num_labels=3, problem_type=problem_type)
    generator = torch.Generator().manual_seed(1)
    if problem_type == "single_label_classification":
        labels = torch.tensor([0, 2, 1, 2])
    elif problem_type == "multi_label_classification":
        labels = torch.randint(0, 2, (4, 3), generator=generator).float()
    else:
        labels = torch.randn(4, 3, generator=generator)
    out = model(**batch, labels=labels)
    assert out.logits.shape == (4, 3)
    reference = {
        "single_label_classification": lambda z: F.cross_entropy(z, labels),
        "multi_label_classification": lambda z: F.binary_cross_entropy_with_logits(z, labels),
        "regression": lambda z: ((z - labels) ** 2).mean(),
    }[problem_type](out.logits)
    torch.testing.assert_close(out.loss, reference)
    out.loss.backward()
    assert model.classifier.weight.grad.abs().sum() > 0
    assert model.embeddings.weight.grad[4:8].abs().sum() > 0  # A, T, C, G were used
    assert model.embeddings.weight.grad[model.config.pad_token_id].abs().sum() == 0


def test_problem_type_is_inferred_like_transformers(batch):
    model = tiny("cnn", num_labels=1)
    model(**batch, labels=torch.randn(4))
    assert model.config.problem_type == "regression"
    model = tiny("cnn", num_labels=3)
    model(**batch, labels=torch.tensor([0, 1, 2, 0]))
    assert model.config.problem_type == "single_label_classification"


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("training", [False, True])
def test_padding_does_not_change_logits(batch, architecture, training):
    model = tiny(architecture, num_labels=2).train(training)
    extra = torch.full((4, 7), NucleotideTokenizer().pad_token_id)
    padded = {"input_ids": torch.cat([batch["input_ids"], extra], dim=1),
              "attention_mask": torch.cat([batch["attention_mask"], torch.zeros_like(extra)], dim=1)}
    torch.testing.assert_close(model(**padded).logits, model(**batch).logits)
    # Each sequence alone, with no padding at all, gives its row of the batch (eval mode: no batch statistics).
    model.eval()
    logits = model(**batch).logits
    for row, length in enumerate(batch["attention_mask"].sum(dim=1)):
        alone = model(input_ids=batch["input_ids"][row : row + 1, :length]).logits
        torch.testing.assert_close(alone[0], logits[row])


def test_resnet_batchnorm_statistics_use_real_tokens_only(batch):
    model = tiny("resnet", num_labels=2).train()
    norm = model.encoder.blocks[0].norm1
    captured = {}
    norm.register_forward_hook(lambda module, args, output: captured.update(hidden=args[0], mask=args[1]))
    model(**batch)
    real = captured["hidden"].transpose(1, 2)[captured["mask"]]  # (real tokens, channels)
    expected = 0.9 * torch.zeros(12) + 0.1 * real.mean(dim=0)  # momentum 0.1 from a zero running mean
    torch.testing.assert_close(norm.running_mean, expected)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_auto_classes_round_trip(tmp_path, batch, architecture):
    model = tiny(architecture, num_labels=2).eval()
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).architecture == architecture
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is BaselineForSequenceClassification
    torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)


@pytest.mark.parametrize("kwargs, message", [
    ({"architecture": "transformer"}, "architecture"), ({"kernel_size": 4}, "odd"),
    ({"hidden_size": 0}, "hidden_size"), ({"dropout": 1.0}, "dropout"), ({"pad_token_id": 10}, "pad_token_id"),
    ({"problem_type": "ranking"}, "problem_type"),
])
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BaselineConfig(**kwargs)


def test_forward_rejects_bad_inputs(batch):
    model = tiny("cnn", num_labels=2)
    with pytest.raises(ValueError, match="exactly one"):
        model()
    with pytest.raises(ValueError, match="all-padding"):
        model(input_ids=batch["input_ids"], attention_mask=torch.zeros_like(batch["attention_mask"]))
