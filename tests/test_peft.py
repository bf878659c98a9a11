"""LoRA on BEACON-B with PEFT: adapters + classifier train, save/load, merge_and_unload."""

import pytest
import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model

from hf_genomics import BeaconConfig, BeaconForSequenceClassification, NucleotideTokenizer
from hf_genomics.io.fasta import read_fasta

TINY = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64)


@pytest.fixture(scope="module")
def batch(data_dir):
    records = list(read_fasta(data_dir / "nrc_ncrna" / "dataset_Rfam_validated_2600_13classes.fasta"))[::400][:6]
    families = sorted({header.split()[-1] for header, _ in records})
    encoded = NucleotideTokenizer()([seq[:80] for _, seq in records], padding=True, return_tensors="pt")
    encoded["labels"] = torch.tensor([families.index(header.split()[-1]) % 3 for header, _ in records])
    return encoded


def lora_model(base):
    config = LoraConfig(task_type=TaskType.SEQ_CLS, target_modules=["query", "value"], r=4, lora_alpha=8)
    return get_peft_model(base, config)


def test_lora_trains_adapters_and_classifier_then_saves_loads_and_merges(tmp_path, batch):
    torch.manual_seed(0)
    base = BeaconForSequenceClassification(BeaconConfig(**TINY, num_labels=3))
    base.save_pretrained(tmp_path / "base")
    frozen_before = {name: param.clone() for name, param in base.named_parameters()}
    model = lora_model(base)

    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    assert trainable and all("lora_" in name or "classifier" in name for name in trainable)
    assert any("query.lora_A" in name for name in trainable) and any("value.lora_B" in name for name in trainable)
    assert not any(".key." in name for name in trainable)
    assert any("classifier" in name for name in trainable)

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # The backbone stayed frozen.
    for name, param in model.base_model.model.named_parameters():
        if "lora_" not in name and "classifier" not in name and name in frozen_before:
            assert torch.equal(param, frozen_before[name]), name

    model.eval()
    with torch.no_grad():
        adapted_logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    model.save_pretrained(tmp_path / "adapter")

    reloaded_base = BeaconForSequenceClassification.from_pretrained(tmp_path / "base")
    reloaded = PeftModel.from_pretrained(reloaded_base, tmp_path / "adapter").eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, adapted_logits)
        merged = reloaded.merge_and_unload()
        assert isinstance(merged, BeaconForSequenceClassification)
        assert not any("lora_" in name for name, _ in merged.named_parameters())
        torch.testing.assert_close(merged(**inputs).logits, adapted_logits, atol=1e-5, rtol=1e-5)
