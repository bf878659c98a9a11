"""Checkpoint conversion: DNABERT (transformers BertForMaskedLM) and the official BEACON-B layout."""

import json
import runpy
import sys

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoModelForMaskedLM, BertConfig, BertForMaskedLM

from hf_genomics import BeaconForMaskedLM, KmerTokenizer, NucleotideTokenizer
from hf_genomics.convert import convert_checkpoint
from hf_genomics.io.fasta import read_fasta
from hf_genomics.models.beacon.modeling_beacon import alibi_slopes

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


@pytest.fixture(scope="module")
def dna(data_dir):
    _, sequence = next(read_fasta(data_dir / "lambda_phage" / "lambda_virus.fa.gz"))
    return [sequence[1000:1060], sequence[5000:5040], sequence[9000:9075]]


def test_dnabert_conversion_matches_transformers_bert(tmp_path, dna):
    torch.manual_seed(0)
    bert = BertForMaskedLM(BertConfig(vocab_size=4101, max_position_embeddings=128, **SIZES)).eval()
    bert.save_pretrained(tmp_path / "dnabert")
    convert_checkpoint("dnabert", tmp_path / "dnabert", tmp_path / "converted")
    beacon = AutoModelForMaskedLM.from_pretrained(tmp_path / "converted").eval()
    assert isinstance(beacon, BeaconForMaskedLM)
    assert beacon.config.position_embedding_type == "absolute" and beacon.config.vocab_size == 4101

    batch = KmerTokenizer(k=6)(dna, padding=True, return_tensors="pt")
    assert batch["input_ids"].max() < 4101
    with torch.no_grad():
        expected = bert(**batch, output_hidden_states=True)
        converted = beacon(**batch, output_hidden_states=True)
    real = batch["attention_mask"].bool()
    assert len(converted.hidden_states) == len(expected.hidden_states) == 3
    for ours, theirs in zip(converted.hidden_states, expected.hidden_states):
        assert (ours[real] - theirs[real]).abs().max() < 1e-5
    assert (converted.logits[real] - expected.logits[real]).abs().max() < 1e-5


def official_beacon_checkpoint(folder, *, with_mlm_head: bool, **config_overrides):
    """A synthetic checkpoint in the RNABenchmark layout: BERT names under `bert.`, EsmConfig-style json."""
    torch.manual_seed(0)
    # transformers' BertForMaskedLM has exactly the official module names; its position table is unused (zeroed).
    bert = BertForMaskedLM(BertConfig(vocab_size=10, pad_token_id=1, max_position_embeddings=1026, **SIZES))
    bert.bert.embeddings.position_embeddings.weight.data.zero_()
    state = {k: v.clone() for k, v in bert.state_dict().items() if "position_" not in k}
    pooler = torch.nn.Linear(SIZES["hidden_size"], SIZES["hidden_size"])
    state.update({"bert.pooler.dense.weight": pooler.weight.data, "bert.pooler.dense.bias": pooler.bias.data})
    if not with_mlm_head:
        state = {k: v for k, v in state.items() if not k.startswith("cls.")}
    folder.mkdir()
    save_file(state, folder / "model.safetensors")
    config = {
        "architectures": ["RnaLmForMaskedLM"],
        "model_type": "rnalm",
        "vocab_size": 10,
        "mask_token_id": 9,
        "pad_token_id": 1,
        "max_position_embeddings": 1026,
        "position_embedding_type": "alibi",
        "alibi_starting_size": 512,
        "token_dropout": False,
        "emb_layer_norm_before": False,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        **SIZES,
        **config_overrides,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return bert, pooler


def alibi_mask(attention_mask: torch.Tensor, heads: int) -> torch.Tensor:
    """BEACON's additive attention mask written out: -slope_h * |i - j|, and -inf on padded keys."""
    length = attention_mask.shape[1]
    distance = (torch.arange(length)[None, :] - torch.arange(length)[:, None]).abs()
    bias = -alibi_slopes(heads)[:, None, None] * distance
    return bias[None].masked_fill(~attention_mask.bool()[:, None, None, :], torch.finfo(torch.float32).min)


def test_beacon_conversion_matches_bert_with_alibi_mask(tmp_path, data_dir):
    bert, pooler = official_beacon_checkpoint(tmp_path / "beacon-b", with_mlm_head=True)
    bert.eval()
    convert_checkpoint("beacon", tmp_path / "beacon-b", tmp_path / "converted")
    beacon = AutoModelForMaskedLM.from_pretrained(tmp_path / "converted").eval()
    assert beacon.config.position_embedding_type == "alibi"

    sequences = [seq[:40 + 7 * i] for i, (_, seq) in enumerate(read_fasta(data_dir / "rnacentral_sample" / "format_rnacentral_active.100.sample-Max50.fasta")) if i < 3]
    batch = NucleotideTokenizer()(sequences, padding=True, return_tensors="pt")
    bert.set_attn_implementation("eager")
    with torch.no_grad():
        expected = bert(input_ids=batch["input_ids"], attention_mask=alibi_mask(batch["attention_mask"], 4))
        converted = beacon(**batch)
        backbone = AutoModel.from_pretrained(tmp_path / "converted").eval()
        pooled = backbone(**batch).pooler_output
    real = batch["attention_mask"].bool()
    assert (converted.logits[real] - expected.logits[real]).abs().max() < 1e-5
    # The pooler is kept in the converted folder for the sequence-level heads.
    expected_pooled = torch.tanh(pooler(backbone(**batch).last_hidden_state[:, 0]))
    torch.testing.assert_close(pooled, expected_pooled)


def test_beacon_checkpoint_without_mlm_head_warns(tmp_path):
    official_beacon_checkpoint(tmp_path / "released", with_mlm_head=False)
    with pytest.warns(UserWarning, match="no MLM head"):
        model = convert_checkpoint("beacon", tmp_path / "released", tmp_path / "converted")
    assert isinstance(model, BeaconForMaskedLM)
    assert (tmp_path / "converted" / "model.safetensors").exists()


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(num_hidden_layers=1), "config does not describe"),
        (dict(num_hidden_layers=3), "lacks encoder weights"),
        (dict(intermediate_size=128), "contradicts its config"),
        (dict(position_embedding_type="rotary"), "position_embedding_type"),
    ],
)
def test_checkpoint_contradicting_its_config_is_refused(tmp_path, overrides, message):
    official_beacon_checkpoint(tmp_path / "bad", with_mlm_head=True, **overrides)
    with pytest.raises(ValueError, match=message):
        convert_checkpoint("beacon", tmp_path / "bad", tmp_path / "converted")


def test_wrong_layout_is_refused(tmp_path):
    official_beacon_checkpoint(tmp_path / "beacon-b", with_mlm_head=True)
    with pytest.raises(ValueError, match="'dnabert' layout"):
        convert_checkpoint("dnabert", tmp_path / "beacon-b", tmp_path / "converted")


def test_command_line(tmp_path, monkeypatch, capsys):
    official_beacon_checkpoint(tmp_path / "beacon-b", with_mlm_head=True)
    argv = ["hf_genomics.convert", "beacon", str(tmp_path / "beacon-b"), str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_module("hf_genomics.convert", run_name="__main__")
    assert "Converted beacon checkpoint" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "beacon"
