"""BEACON-B on the Hub: Auto* registration, save/load round trips, trust_remote_code without hf_genomics,
fill-mask pipeline."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    pipeline,
)

from hf_genomics import (
    BeaconConfig,
    BeaconForMaskedLM,
    BeaconForPairwisePrediction,
    BeaconForSequenceClassification,
    BeaconForSequencePairClassification,
    BeaconForTokenClassification,
    BeaconModel,
    NucleotideTokenizer,
)
from hf_genomics.io.fasta import read_fasta
from hf_genomics.models.beacon.modeling_beacon import alibi_slopes
from scripts.assertions import assert_outputs_close, assert_same_weights

TINY = dict(
    num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64, pairwise_channels=8, pairwise_num_blocks=1
)
ALL_AUTO_CLASSES = [
    "AutoConfig",
    "AutoModel",
    "AutoModelForMaskedLM",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
]


@pytest.fixture(scope="module")
def tokenizer():
    return NucleotideTokenizer()


@pytest.fixture(scope="module")
def rna_batch(tokenizer, data_dir):
    sequences = [seq for _, seq in read_fasta(data_dir / "rnacentral_sample" / "format_rnacentral_active.100.sample-Max50.fasta")]
    return tokenizer(sequences[:3], padding=True, return_tensors="pt")


def outputs_of(model, batch):
    with torch.no_grad():
        out = model(**batch)
    return out.logits if "logits" in out else out.last_hidden_state


@pytest.mark.parametrize(
    "model_class,auto_class",
    [
        (BeaconModel, AutoModel),
        (BeaconForMaskedLM, AutoModelForMaskedLM),
        (BeaconForSequenceClassification, AutoModelForSequenceClassification),
        (BeaconForTokenClassification, AutoModelForTokenClassification),
        (BeaconForPairwisePrediction, None),
    ],
)
def test_save_and_auto_load_round_trip(tmp_path, rna_batch, model_class, auto_class):
    torch.manual_seed(0)
    model = model_class(BeaconConfig(**TINY, num_labels=3 if model_class is not BeaconForPairwisePrediction else 1))
    model.eval().save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert sorted(saved["auto_map"]) == sorted(ALL_AUTO_CLASSES)
    assert saved["auto_map"]["AutoModelForTokenClassification"] == "modeling_beacon.BeaconForTokenClassification"
    assert {"model.safetensors", "modeling_beacon.py", "configuration_beacon.py"} <= set(os.listdir(tmp_path))
    assert isinstance(AutoConfig.from_pretrained(tmp_path), BeaconConfig)
    loaded = (auto_class or model_class).from_pretrained(tmp_path).eval()
    assert type(loaded) is model_class
    # The ALiBi slopes are a non-persistent buffer: they must be rebuilt, not left uninitialised, on load.
    torch.testing.assert_close(loaded.base_model.alibi.slopes, alibi_slopes(4))
    assert_same_weights(loaded.state_dict(), model.state_dict())
    assert_outputs_close(outputs_of(loaded, rna_batch), outputs_of(model, rna_batch))


def test_sequence_pair_model_round_trip(tmp_path, rna_batch):
    model = BeaconForSequencePairClassification(BeaconConfig(**TINY, num_labels=1)).eval()
    model.save_pretrained(tmp_path)
    loaded = BeaconForSequencePairClassification.from_pretrained(tmp_path).eval()
    pair = dict(rna_batch, input_ids_b=rna_batch["input_ids"].flip(0), attention_mask_b=rna_batch["attention_mask"].flip(0))
    assert_same_weights(loaded.state_dict(), model.state_dict())
    assert_outputs_close(outputs_of(loaded, pair), outputs_of(model, pair))
    assert "modeling_beacon.py" in os.listdir(tmp_path)


def test_masked_lm_head_checkpoint_loads_as_backbone_and_classifier(tmp_path, rna_batch):
    torch.manual_seed(0)
    mlm = BeaconForMaskedLM(BeaconConfig(**TINY)).eval()
    mlm.save_pretrained(tmp_path)
    backbone = AutoModel.from_pretrained(tmp_path).eval()
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2).eval()
    hidden = mlm.beacon(**rna_batch).last_hidden_state
    torch.testing.assert_close(backbone(**rna_batch).last_hidden_state, hidden)
    torch.testing.assert_close(classifier.beacon(**rna_batch).last_hidden_state, hidden)


def test_fill_mask_pipeline(tokenizer):
    torch.manual_seed(0)
    model = BeaconForMaskedLM(BeaconConfig(**TINY)).eval()
    fill_mask = pipeline("fill-mask", model=model, tokenizer=tokenizer)
    predictions = fill_mask("ACGUA<mask>GCAUG", top_k=10)
    encoded = tokenizer("ACGUA<mask>GCAUG", return_tensors="pt")
    position = (encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero().item()
    with torch.no_grad():
        probabilities = model(**encoded).logits[0, position].softmax(-1)
    assert len(predictions) == 10
    for prediction in predictions:
        assert prediction["score"] == pytest.approx(probabilities[prediction["token"]].item(), abs=1e-6)
        assert prediction["token_str"] == tokenizer.convert_ids_to_tokens(prediction["token"])


REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys

    class BlockHfGenomics:
        # Simulates a machine where hf_genomics is not installed.
        def find_spec(self, name, path=None, target=None):
            if name == "hf_genomics" or name.startswith("hf_genomics."):
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, BlockHfGenomics())
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer

    folder, out = sys.argv[1], sys.argv[2]
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    batch = tokenizer(["ACGUACGGAUCCA", "GGAUCCAU"], padding=True, return_tensors="pt")
    results = {}
    for auto_class in (AutoModelForMaskedLM, AutoModel, AutoModelForSequenceClassification):
        model = auto_class.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            output = model(**batch)
        results[type(model).__name__] = output.logits if "logits" in output else output.last_hidden_state
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    results["input_ids"] = batch["input_ids"]
    assert not any(name.startswith("hf_genomics") for name in sys.modules)
    torch.save(results, out)
    """
)


@pytest.mark.slow
def test_trust_remote_code_without_hf_genomics(tmp_path, tokenizer):
    torch.manual_seed(0)
    model = BeaconForMaskedLM(BeaconConfig(**TINY)).eval()
    folder = tmp_path / "beacon-tiny"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    script = tmp_path / "load_remote.py"
    script.write_text(REMOTE_SCRIPT)
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, str(script), str(folder), str(tmp_path / "out.pt")], check=True, env=env, cwd=tmp_path)
    remote = torch.load(tmp_path / "out.pt")

    batch = tokenizer(["ACGUACGGAUCCA", "GGAUCCAU"], padding=True, return_tensors="pt")
    assert torch.equal(remote["input_ids"], batch["input_ids"])
    with torch.no_grad():
        assert_outputs_close(remote["BeaconForMaskedLM"], model(**batch).logits)
        assert_outputs_close(remote["BeaconModel"], model.beacon(**batch).last_hidden_state)
    assert remote["BeaconForSequenceClassification"].shape == (2, 2)


def test_write_model_card(tmp_path):
    from hf_genomics import write_model_card

    BeaconForSequenceClassification(BeaconConfig(**TINY, num_labels=2)).save_pretrained(tmp_path)
    path = write_model_card(
        tmp_path,
        model_name="hf-genomics/beacon-b-ncrna",
        base_model="hf-genomics/beacon-b",
        datasets=("nRC",),
        tags=("rna", "beacon"),
        training_summary="Fine-tuned on nRC: a test.",
        metrics={"accuracy": 0.91},
    )
    text = path.read_text()
    front, body = text.split("---\n")[1], text.split("---\n", 2)[2]
    assert "library_name: transformers" in front and "pipeline_tag: text-classification" in front
    assert 'license: apache-2.0' in front and '- "nRC"' in front and '- "rna"' in front
    assert 'base_model: "hf-genomics/beacon-b"' in front
    assert "# hf-genomics/beacon-b-ncrna" in body and "| accuracy | 0.91 |" in body
    with pytest.raises(ValueError, match="not a folder"):
        write_model_card(tmp_path / "missing", model_name="x")


def test_shipped_beacon_b_card_has_hub_front_matter(data_dir):
    text = (data_dir.parent / "model_cards" / "beacon-b.md").read_text()
    front = text.split("---\n")[1]
    for field in ("license:", "library_name: transformers", "pipeline_tag: fill-mask", "tags:", "datasets:"):
        assert field in front
