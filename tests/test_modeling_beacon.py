"""BEACON-B modelling: ALiBi against hand-written formulas, attention backends, padding, every head's loss."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from hf_genomics import (
    BeaconConfig,
    BeaconForMaskedLM,
    BeaconForPairwisePrediction,
    BeaconForSequenceClassification,
    BeaconForSequencePairClassification,
    BeaconForTokenClassification,
    BeaconModel,
)
from hf_genomics.io.fasta import read_fasta
from hf_genomics.models.beacon.modeling_beacon import BeaconAlibiBias, alibi_slopes
from hf_genomics.tokenization_nucleotide import NucleotideTokenizer

TINY = dict(
    num_hidden_layers=2,
    hidden_size=32,
    num_attention_heads=4,
    intermediate_size=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    pairwise_channels=8,
    pairwise_num_blocks=2,
    pairwise_dropout=0.0,
)


def tiny_config(**overrides) -> BeaconConfig:
    return BeaconConfig(**{**TINY, **overrides})


@pytest.fixture(scope="module")
def tokenizer():
    return NucleotideTokenizer()


@pytest.fixture(scope="module")
def ncrna(data_dir):
    """First 4 nRC ncRNA test sequences (cropped to 60 nt) with their family names."""
    records = []
    for header, sequence in read_fasta(data_dir / "nrc_ncrna" / "dataset_Rfam_validated_2600_13classes.fasta"):
        records.append((header.split()[-1], sequence[:60]))
        if len(records) == 4:
            break
    return records


@pytest.fixture(scope="module")
def bprna(data_dir):
    """Four short bpRNA structures (sequence, dot-bracket) of different lengths."""
    rows = [json.loads(line) for line in (data_dir / "bprna_rgb" / "test.json").open()]
    rows = sorted((row for row in rows if 20 <= len(row["seq"]) <= 48), key=lambda row: len(row["seq"]))
    return [(row["seq"], row["label"]) for row in rows[:: max(1, len(rows) // 4)][:4]]


def pair_matrix(dot_bracket: str) -> torch.Tensor:
    """Pairing matrix of a dot-bracket string (reference parser, one bracket type per stack)."""
    matrix = torch.zeros(len(dot_bracket), len(dot_bracket))
    stacks = {")": [], "]": [], "}": [], ">": []}
    openers = {"(": ")", "[": "]", "{": "}", "<": ">"}
    for position, char in enumerate(dot_bracket):
        if char in openers:
            stacks[openers[char]].append(position)
        elif char in stacks:
            partner = stacks[char].pop()
            matrix[position, partner] = matrix[partner, position] = 1
    return matrix


# ---------------------------------------------------------------- ALiBi


def test_alibi_slopes_follow_the_paper_rule():
    exponents_12 = [-1, -2, -3, -4, -5, -6, -7, -8, -0.5, -1.5, -2.5, -3.5]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor([2.0**e for e in exponents_12]))
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(h + 1) for h in range(8)]))
    # 6 heads: the 4-head series 2^-2, 2^-4, 2^-6, 2^-8, then every other slope of the 8-head series.
    torch.testing.assert_close(alibi_slopes(6), torch.tensor([2.0**e for e in [-2, -4, -6, -8, -1, -3]]))


def test_alibi_bias_matches_formula():
    slopes = alibi_slopes(12).tolist()
    bias = BeaconAlibiBias(12)(7, torch.float32)
    expected = torch.tensor([[[-slopes[h] * abs(i - j) for j in range(7)] for i in range(7)] for h in range(12)])
    assert bias.shape == (1, 12, 7, 7)
    torch.testing.assert_close(bias[0], expected)


def reference_layer(layer, hidden, key_padding, slopes):
    """One post-LN BEACON layer written out: softmax(QK^T/sqrt(d) - slope*|i-j| + pad) V, add & norm, FFN."""
    attention = layer.attention.self
    batch, length, width = hidden.shape
    heads = len(slopes)
    head_dim = width // heads

    def split(x):
        return x.view(batch, length, heads, head_dim).transpose(1, 2)

    q, k, v = split(attention.query(hidden)), split(attention.key(hidden)), split(attention.value(hidden))
    distance = (torch.arange(length)[None, :] - torch.arange(length)[:, None]).abs()
    scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim) - slopes[None, :, None, None] * distance
    scores = scores.masked_fill(~key_padding[:, None, None, :], float("-inf"))
    context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, width)
    out = layer.attention.output
    attended = F.layer_norm(out.dense(context) + hidden, (width,), out.LayerNorm.weight, out.LayerNorm.bias, 1e-12)
    ffn = layer.output
    inner = F.gelu(layer.intermediate.dense(attended))
    return F.layer_norm(ffn.dense(inner) + attended, (width,), ffn.LayerNorm.weight, ffn.LayerNorm.bias, 1e-12)


def test_alibi_bias_masks_only_negligible_distances():
    slopes = alibi_slopes(4)  # 2^-2 ... 2^-8: head 0 reaches 60 / 0.25 = 240 tokens each way
    bias = BeaconAlibiBias(4)(600, torch.float32)[0]
    distance = (torch.arange(600)[None, :] - torch.arange(600)[:, None]).abs()
    formula = -slopes[:, None, None] * distance
    kept = formula >= -60
    torch.testing.assert_close(bias[kept], formula[kept])
    assert torch.isneginf(bias[~kept]).all()
    assert kept[0][300].sum() == 2 * 240 + 1 and kept[3].all()


def test_long_inputs_match_the_uncut_alibi_formula_without_denormals(tokenizer, data_dir):
    """At 600 tokens head 0 masks most keys; outputs still equal the exact formula, and no attention weight is a
    denormal float (the reason for the cut, see BeaconAlibiBias)."""
    torch.manual_seed(0)
    model = BeaconModel(tiny_config(attn_implementation="eager")).eval()
    records = read_fasta(data_dir / "nrc_ncrna" / "dataset_Rfam_validated_2600_13classes.fasta")
    sequence = "".join(sequence for _, sequence in records)[:598]
    batch = tokenizer([sequence], return_tensors="pt")
    with torch.no_grad():
        hidden = model.embeddings(batch["input_ids"])
        for layer in model.encoder.layer:
            hidden = reference_layer(layer, hidden, batch["attention_mask"].bool(), alibi_slopes(4))
        output = model(**batch, output_attentions=True)
    torch.testing.assert_close(output.last_hidden_state, hidden, atol=2e-5, rtol=1e-4)
    tiny = torch.finfo(torch.float32).tiny
    for weights in output.attentions:
        assert not ((weights != 0) & (weights < tiny)).any()


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_encoder_matches_handwritten_reference(tokenizer, ncrna, attn_implementation):
    torch.manual_seed(0)
    model = BeaconModel(tiny_config(attn_implementation=attn_implementation)).eval()
    batch = tokenizer([seq[:20 + 9 * i] for i, (_, seq) in enumerate(ncrna)], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.embeddings(batch["input_ids"])
        for layer in model.encoder.layer:
            hidden = reference_layer(layer, hidden, batch["attention_mask"].bool(), alibi_slopes(4))
        output = model(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(output[real], hidden[real], atol=2e-5, rtol=1e-4)


class PositionBiasSpy:
    """An attention backend that records the position bias it is given and defers to sdpa."""

    def __init__(self):
        self.biases = []

    def __call__(self, module, query, key, value, attention_mask, position_bias=None, **kwargs):
        self.biases.append(position_bias)
        return sdpa_attention_forward(module, query, key, value, attention_mask, position_bias=position_bias, **kwargs)


def test_alibi_is_built_once_and_broadcast_over_the_batch(tokenizer, ncrna):
    spy = PositionBiasSpy()
    AttentionInterface.register("beacon_bias_spy", spy)
    model = BeaconModel(tiny_config(attn_implementation="beacon_bias_spy")).eval()
    batch = tokenizer([seq[:30] for _, seq in ncrna], return_tensors="pt")  # same length: no padding
    with torch.no_grad():
        model(**batch)
    assert len(spy.biases) == 2
    assert spy.biases[0] is spy.biases[1]  # one tensor shared by all layers
    assert spy.biases[0].shape == (1, 4, 32, 32)  # O(H * L^2), not O(B * H * L^2)


# ---------------------------------------------------------------- backends, padding, length


def test_eager_equals_sdpa_on_padded_batch(tokenizer, ncrna):
    torch.manual_seed(0)
    sdpa = BeaconForMaskedLM(tiny_config()).eval()
    eager = BeaconForMaskedLM(tiny_config(attn_implementation="eager")).eval()
    eager.load_state_dict(sdpa.state_dict())
    assert sdpa.config._attn_implementation == "alibi_auto"  # the default: dense sdpa at this size on CPU
    batch = tokenizer([seq[: 25 + 10 * i] for i, (_, seq) in enumerate(ncrna)], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(sdpa(**batch).logits, eager(**batch).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position_embedding_type", ["alibi", "absolute"])
def test_padded_batch_equals_unpadded_sequences(tokenizer, ncrna, position_embedding_type):
    torch.manual_seed(0)
    config = tiny_config(position_embedding_type=position_embedding_type, max_position_embeddings=128)
    model = BeaconModel(config).eval()
    sequences = [seq[: 15 + 12 * i] for i, (_, seq) in enumerate(ncrna)]
    batch = tokenizer(sequences, padding=True, return_tensors="pt")
    assert batch["attention_mask"].sum(1).unique().numel() == len(sequences)
    with torch.no_grad():
        padded = model(**batch)
        for row, sequence in enumerate(sequences):
            single = model(**tokenizer(sequence, return_tensors="pt"))
            n = single.last_hidden_state.shape[1]
            torch.testing.assert_close(padded.last_hidden_state[row, :n], single.last_hidden_state[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(padded.pooler_output[row], single.pooler_output[0], atol=1e-5, rtol=0)


def test_extrapolates_to_four_times_the_training_length(tokenizer, data_dir):
    torch.manual_seed(0)
    _, sequence = next(read_fasta(data_dir / "lambda_phage" / "lambda_virus.fa.gz"))
    model = BeaconForMaskedLM(tiny_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train = tokenizer([sequence[i : i + 62] for i in range(0, 62 * 4, 62)], return_tensors="pt")  # 64 tokens
    for _ in range(3):
        labels = train["input_ids"].clone()
        optimizer.zero_grad()
        model(**train, labels=labels).loss.backward()
        optimizer.step()
    model.eval()
    long = tokenizer([sequence[:254]], return_tensors="pt")  # 256 tokens = 4x
    with torch.no_grad():
        logits = model(**long).logits
        model.set_attn_implementation("eager")
        eager_logits = model(**long).logits
    assert logits.shape == (1, 256, 10)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, eager_logits, atol=1e-4, rtol=1e-4)


def test_absolute_positions_refuse_inputs_longer_than_the_table(tokenizer, ncrna):
    model = BeaconModel(tiny_config(position_embedding_type="absolute", max_position_embeddings=16))
    with pytest.raises(ValueError, match="at most 16"):
        model(**tokenizer([ncrna[0][1][:30]], return_tensors="pt"))


@pytest.mark.parametrize("bad_id", [10, 200, -1])
def test_ids_outside_the_vocabulary_raise_a_value_error(tokenizer, ncrna, bad_id):
    input_ids = tokenizer([seq[:20] for _, seq in ncrna[:2]], return_tensors="pt")["input_ids"]
    input_ids[1, 5] = bad_id
    low, high = int(input_ids.min()), int(input_ids.max())
    message = rf"input_ids range from {low} to {high}, .* \(config\.vocab_size=10\): the tokenizer probably does not"
    with pytest.raises(ValueError, match=message):
        BeaconModel(tiny_config())(input_ids)


# ---------------------------------------------------------------- heads


def test_masked_lm_loss_and_tied_decoder(tokenizer, ncrna):
    torch.manual_seed(0)
    model = BeaconForMaskedLM(tiny_config())
    assert model.cls.predictions.decoder.weight is model.beacon.embeddings.word_embeddings.weight
    batch = tokenizer([seq for _, seq in ncrna], padding=True, return_tensors="pt")
    labels = torch.full_like(batch["input_ids"], -100)
    masked = torch.zeros_like(labels, dtype=torch.bool)
    masked[:, 3::7] = True
    masked &= batch["attention_mask"].bool()
    labels[masked] = batch["input_ids"][masked]
    inputs = batch["input_ids"].masked_fill(masked, tokenizer.mask_token_id)
    out = model(input_ids=inputs, attention_mask=batch["attention_mask"], labels=labels)
    expected = F.cross_entropy(out.logits[masked], batch["input_ids"][masked])
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.beacon.embeddings.word_embeddings.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "problem_type,num_labels", [("single_label_classification", 3), ("multi_label_classification", 3), ("regression", 1)]
)
def test_sequence_classification_losses(tokenizer, ncrna, problem_type, num_labels):
    torch.manual_seed(0)
    model = BeaconForSequenceClassification(tiny_config(num_labels=num_labels, problem_type=problem_type))
    batch = tokenizer([seq for _, seq in ncrna], padding=True, return_tensors="pt")
    if problem_type == "single_label_classification":
        families = sorted({family for family, _ in ncrna})
        labels = torch.tensor([families.index(family) % 3 for family, _ in ncrna])
    elif problem_type == "multi_label_classification":
        labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    else:
        labels = torch.tensor([len(seq) / 100 for _, seq in ncrna])
    out = model(**batch, labels=labels)
    expected = {
        "single_label_classification": lambda: F.cross_entropy(out.logits, labels),
        "multi_label_classification": lambda: F.binary_cross_entropy_with_logits(out.logits, labels),
        "regression": lambda: F.mse_loss(out.logits.squeeze(-1), labels),
    }[problem_type]()
    assert out.logits.shape == (4, num_labels)
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.classifier.weight.grad.abs().sum() > 0
    assert model.beacon.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0


def test_problem_type_is_inferred_from_labels(tokenizer, ncrna):
    model = BeaconForSequenceClassification(tiny_config(num_labels=3))
    model(**tokenizer([ncrna[0][1]], return_tensors="pt"), labels=torch.tensor([2]))
    assert model.config.problem_type == "single_label_classification"


def test_mean_pooling_is_the_mean_state_of_each_sequence_padded_or_packed(tokenizer, ncrna):
    """classifier_pooling="mean": tanh(dense(mean of every token's state, <cls>/<eos> included)) of each sequence
    run alone; a padded batch and a packed batch (two sequences per row, padded tail) give it too."""
    torch.manual_seed(0)
    model = BeaconForSequenceClassification(tiny_config(num_labels=3, classifier_pooling="mean")).double().eval()
    sequences = [seq[: 15 + 12 * i] for i, (_, seq) in enumerate(ncrna)]
    encoded = [tokenizer(seq, return_tensors="pt")["input_ids"][0] for seq in sequences]
    with torch.no_grad():
        expected = []
        for ids in encoded:
            states = model.beacon(input_ids=ids[None]).last_hidden_state[0]
            expected.append(torch.tanh(model.beacon.pooler.dense(states.sum(0) / len(ids))))
        expected = torch.stack(expected)
        padded = tokenizer(sequences, padding=True, return_tensors="pt")
        rows = [torch.cat(encoded[:2]), torch.cat(encoded[2:])]
        width = max(len(row) for row in rows) + 3
        packed = {
            "input_ids": torch.stack([F.pad(row, (0, width - len(row)), value=tokenizer.pad_token_id) for row in rows]),
            "attention_mask": torch.stack([(torch.arange(width) < len(row)).long() for row in rows]),
            "position_ids": torch.stack(
                [F.pad(torch.cat([torch.arange(len(encoded[i])) for i in pair]), (0, width - len(row)), value=1)
                 for row, pair in zip(rows, [(0, 1), (2, 3)])]
            ),
        }  # fmt: skip
        for batch in (padded, packed):
            torch.testing.assert_close(model.beacon(**batch).pooler_output, expected, rtol=1e-9, atol=1e-9)
            torch.testing.assert_close(model(**batch).logits, model.classifier(expected), rtol=1e-9, atol=1e-9)
        # The default pools <cls>, which does not depend on padding either.
        model.config.classifier_pooling = "cls"
        cls_pooled = model.beacon(**padded).pooler_output
    assert not torch.allclose(cls_pooled, expected)


def test_classifier_pooling_survives_save_and_load(tmp_path, tokenizer, ncrna):
    torch.manual_seed(0)
    model = BeaconForSequenceClassification(tiny_config(num_labels=2, classifier_pooling="mean")).eval()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["classifier_pooling"] == "mean"
    loaded = BeaconForSequenceClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.classifier_pooling == "mean"
    batch = tokenizer([seq for _, seq in ncrna], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)
    # A `from_pretrained` keyword is set after the config's checks: the pooler refuses it.
    unknown = BeaconForSequenceClassification.from_pretrained(tmp_path, classifier_pooling="max")
    with pytest.raises(ValueError, match=r"`classifier_pooling` must be one of \('cls', 'mean'\), got 'max'"):
        unknown(**batch)


def test_token_classification_outputs_are_aligned_with_input_ids(tokenizer, bprna):
    torch.manual_seed(0)
    model = BeaconForTokenClassification(tiny_config(num_labels=2)).eval()
    sequences = [seq for seq, _ in bprna]
    batch = tokenizer(sequences, padding=True, return_tensors="pt")
    width = batch["input_ids"].shape[1]
    # Nucleotide t of row b is token t + 1 (after <cls>); -100 on <cls>, <eos>, padding.
    labels = torch.full((len(sequences), width), -100)
    for row, (_, structure) in enumerate(bprna):
        labels[row, 1 : len(structure) + 1] = torch.tensor([char != "." for char in structure], dtype=torch.long)
    out = model(**batch, labels=labels)
    assert out.logits.shape == (len(sequences), width, 2)
    # Reference: transformers' token-classification head, a linear map of every token's state.
    hidden = model.beacon(**batch).last_hidden_state
    torch.testing.assert_close(out.logits, model.classifier(hidden))
    keep = labels != -100
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[keep], labels[keep]))
    with pytest.raises(ValueError, match=r"aligned with input_ids"):
        model(**batch, labels=labels[:, 1:-1])
    # Left padding gives the same per-nucleotide outputs, shifted by the padding.
    tokenizer.padding_side = "left"
    try:
        left = tokenizer(sequences, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = "right"
    left_logits = model(**left).logits
    for row, sequence in enumerate(sequences):
        n = len(sequence) + 2
        torch.testing.assert_close(left_logits[row, width - n :], out.logits[row, :n], atol=1e-5, rtol=0)


def test_token_regression_ignores_minus_100(tokenizer, bprna):
    torch.manual_seed(0)
    model = BeaconForTokenClassification(tiny_config(num_labels=3, problem_type="regression"))
    sequences = [seq for seq, _ in bprna]
    batch = tokenizer(sequences, padding=True, return_tensors="pt")
    labels = torch.rand(len(sequences), batch["input_ids"].shape[1], 3)
    labels[0, 2, 1] = -100
    labels[1, 5] = -100
    labels[:, 0] = -100
    for row, sequence in enumerate(sequences):
        labels[row, len(sequence) + 1 :] = -100
    out = model(**batch, labels=labels)
    keep = labels != -100
    torch.testing.assert_close(out.loss, F.mse_loss(out.logits[keep], labels[keep]))
    out.loss.backward()
    assert torch.isfinite(model.classifier.weight.grad).all()
    with pytest.raises(ValueError, match="aligned with input_ids"):
        model(**batch, labels=labels[:, :-3])


@pytest.mark.parametrize("problem_type", [None, "regression"])
def test_pairwise_prediction_on_secondary_structures(tokenizer, bprna, problem_type):
    torch.manual_seed(0)
    model = BeaconForPairwisePrediction(tiny_config(num_labels=1, problem_type=problem_type))
    sequences = [seq for seq, _ in bprna]
    batch = tokenizer(sequences, padding=True, return_tensors="pt")
    width = batch["input_ids"].shape[1]
    labels = torch.full((len(sequences), width, width), -100.0)
    for row, (_, structure) in enumerate(bprna):
        n = len(structure)
        labels[row, 1 : n + 1, 1 : n + 1] = pair_matrix(structure)
    out = model(**batch, labels=labels)
    assert out.logits.shape == (len(sequences), width, width)
    torch.testing.assert_close(out.logits, out.logits.transpose(1, 2))
    keep = labels != -100
    if problem_type == "regression":
        expected = F.mse_loss(out.logits[keep], labels[keep])
    else:
        expected = F.binary_cross_entropy_with_logits(out.logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.classifier.input_conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="seq_len, seq_len"):
        model(**batch, labels=labels[:, 1:, 1:])


def test_pairwise_cells_are_beacons_map_on_the_nucleotides_alone(tokenizer, bprna):
    """BEACON drops <cls>/<eos> (`[:, 1:-1]`) before its pair head: the full-length map holds that map at the
    nucleotide cells, for every row of a padded batch."""
    torch.manual_seed(0)
    model = BeaconForPairwisePrediction(tiny_config(num_labels=1)).eval()
    sequences = [seq for seq, _ in bprna]
    batch = tokenizer(sequences, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
        for row, sequence in enumerate(sequences):
            single = tokenizer([sequence], return_tensors="pt")
            nucleotides = model.beacon(**single).last_hidden_state[:, 1:-1]
            expected = model.classifier(nucleotides, torch.ones(nucleotides.shape[:2], dtype=torch.bool))[0]
            n = len(sequence)
            torch.testing.assert_close(logits[row, 1 : n + 1, 1 : n + 1], expected, atol=1e-5, rtol=1e-4)


def test_pairwise_pos_weight_weights_positive_pairs(tokenizer, bprna):
    torch.manual_seed(0)
    model = BeaconForPairwisePrediction(tiny_config(num_labels=1, pairwise_pos_weight=20.0)).eval()
    sequence, structure = bprna[0]
    labels = torch.nn.functional.pad(pair_matrix(structure)[None], (1, 1, 1, 1), value=-100.0)
    out = model(**tokenizer([sequence], return_tensors="pt"), labels=labels)
    keep = labels != -100
    logits, y = out.logits[keep], labels[keep]
    # The textbook weighted BCE, written out: -(w * y * log s(x) + (1 - y) * log(1 - s(x))), averaged.
    expected = -(20.0 * y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)).mean()
    torch.testing.assert_close(out.loss, expected)
    with pytest.raises(ValueError, match="pairwise_pos_weight"):
        tiny_config(pairwise_pos_weight=0)


def test_sequence_pair_classification_on_crispr_pairs(tokenizer, data_dir):
    torch.manual_seed(0)
    rows = (data_dir / "crispr_offtarget_kleinstiver" / "Kleinstiver_5gRNA_active_offTargets.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    fields = [dict(zip(header, row.split("\t"))) for row in rows[1:5]]
    guides = tokenizer([row["Target Sequence"].replace("N", "A") for row in fields], return_tensors="pt")
    targets = tokenizer([row["Off-Target Sequence"] for row in fields], return_tensors="pt")
    labels = torch.tensor([math.log1p(float(row["GUIDE-seq Reads"])) for row in fields])
    model = BeaconForSequencePairClassification(tiny_config(num_labels=1))
    out = model(**guides, input_ids_b=targets["input_ids"], attention_mask_b=targets["attention_mask"], labels=labels)
    pooled_a = model.beacon(**guides).pooler_output
    pooled_b = model.beacon(**targets).pooler_output
    expected_logits = model.classifier(torch.cat([pooled_a, pooled_b], dim=-1))
    torch.testing.assert_close(out.logits, expected_logits)
    torch.testing.assert_close(out.loss, F.mse_loss(expected_logits.squeeze(-1), labels))
    out.loss.backward()
    assert model.classifier.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="input_ids_b"):
        model(**guides)


# (head, config overrides, labels for a batch of 2 x 20 nt, what the error says after "labels must be a torch.Tensor")
UNUSABLE_LABELS = [
    (BeaconForMaskedLM, {}, [1, 2], r"of int64 token ids, shape \(batch, seq_len\).*; got a list"),
    (BeaconForMaskedLM, {}, torch.zeros(1, 22, dtype=torch.long), r"got shape \(1, 22\) where \(2, 22\) fits"),
    (BeaconForMaskedLM, {}, torch.zeros(2, 22), "got dtype torch.float32"),
    (BeaconForSequenceClassification, dict(num_labels=3), [1, 2], r"of shape \(batch,\) int64 class ids.*; got a list"),
    (BeaconForSequenceClassification, dict(num_labels=1), torch.tensor([0.5]), r"got shape \(1,\) where \(2,\) or"),
    (BeaconForSequenceClassification, dict(num_labels=3, problem_type="regression"), torch.rand(2), r"\(2, 3\) fits"),
    (BeaconForTokenClassification, dict(num_labels=3), [[0] * 20] * 2, "got a list"),
    (BeaconForTokenClassification, dict(num_labels=3), torch.zeros(1, 22, dtype=torch.long), r"where \(2, 22\) fits"),
    (BeaconForPairwisePrediction, dict(num_labels=1), [[[0.0] * 20] * 20] * 2, r"pair labels.*; got a list"),
    (BeaconForSequencePairClassification, dict(num_labels=1), [0.5, 0.1], "regression targets.*; got a list"),
]


@pytest.mark.parametrize(
    "head, overrides, labels, message",
    UNUSABLE_LABELS,
    ids=[f"{case[0].__name__}-{k}" for k, case in enumerate(UNUSABLE_LABELS)],
)
def test_unusable_labels_raise_what_the_head_accepts(tokenizer, ncrna, head, overrides, labels, message):
    """Lists, other batch sizes, shapes torch would broadcast and wrong dtypes: one clear error from every head;
    a rejected call does not fix the problem type that the next labels would infer."""
    model = head(tiny_config(**overrides)).eval()
    batch = tokenizer([seq[:20] for _, seq in ncrna[:2]], return_tensors="pt")
    if head is BeaconForSequencePairClassification:
        batch["input_ids_b"] = batch["input_ids"]
    with pytest.raises(ValueError, match=rf"^labels must be a torch\.Tensor .*{message}"):
        model(**batch, labels=labels)
    if isinstance(labels, list):
        assert model.config.problem_type == overrides.get("problem_type")


# ---------------------------------------------------------------- outputs and training utilities


def test_hidden_states_and_attentions_on_request(tokenizer, ncrna):
    model = BeaconModel(tiny_config(attn_implementation="eager")).eval()
    batch = tokenizer([seq[:20] for _, seq in ncrna[:2]], return_tensors="pt")
    out = model(**batch, output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 3 and len(out.attentions) == 2
    assert out.attentions[0].shape == (2, 4, 22, 22)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(2, 4, 22))
    torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)
    assert model(**batch).hidden_states is None


def test_gradient_checkpointing_gives_the_same_gradients(tokenizer, ncrna):
    torch.manual_seed(0)
    model = BeaconForSequenceClassification(tiny_config(num_labels=2))
    batch = tokenizer([seq for _, seq in ncrna], padding=True, return_tensors="pt")
    labels = torch.tensor([0, 1, 1, 0])
    model(**batch, labels=labels).loss.backward()
    reference = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing_enable()
    model.train()
    assert model.is_gradient_checkpointing
    model(**batch, labels=labels).loss.backward()
    for expected, param in zip(reference, model.parameters()):
        torch.testing.assert_close(param.grad, expected, atol=1e-6, rtol=1e-5)


def test_no_split_modules_and_sdpa_support():
    assert BeaconModel._no_split_modules == ["BeaconEmbeddings", "BeaconLayer"]
    assert BeaconModel._supports_sdpa


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(hidden_size=30), "divisible by `num_attention_heads`"),
        (dict(position_embedding_type="rope"), "position_embedding_type"),
        (dict(position_embedding_type="absolute", max_position_embeddings=None), "max_position_embeddings"),
        (dict(num_hidden_layers=0), "num_hidden_layers"),
        (dict(hidden_dropout_prob=1.0), "hidden_dropout_prob"),
        (dict(hidden_act="swishy"), "hidden_act"),
        (dict(pad_token_id=10), "pad_token_id"),
        (dict(classifier_pooling="max"), r"`classifier_pooling` must be one of \('cls', 'mean'\), got 'max'"),
    ],
)
def test_bad_configs_raise_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_default_config_is_beacon_b():
    config = BeaconConfig()
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (12, 768, 12)
    assert (config.intermediate_size, config.hidden_act, config.vocab_size) == (3072, "gelu", 10)
    assert (config.type_vocab_size, config.position_embedding_type, config.classifier_pooling) == (2, "alibi", "cls")
    with torch.device("meta"):
        model = BeaconModel(config)
    assert not hasattr(model.embeddings.position_embeddings, "weight")
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(85.66e6, rel=1e-3)


def test_trainer_keeps_the_heads_mean_loss_unscaled(tmp_path):
    # The heads average their loss over the local batch; Trainer must not also rescale it by the number of
    # processes or items (what it does for models that take `num_items_in_batch`).
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(str(tmp_path), use_cpu=True, report_to=[], gradient_accumulation_steps=2)
    trainer = Trainer(model=BeaconForMaskedLM(tiny_config()), args=args)
    assert trainer.model_accepts_loss_kwargs is False
