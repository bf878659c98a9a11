"""Tiny models, real prom_300_tata slices and deterministic views shared by the LayerMatch tests and
the two-process script."""

from __future__ import annotations

from pathlib import Path

import datasets
import torch
from transformers import BertConfig, BertForSequenceClassification

from hf_genomics import NucleotideTokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]
PROM_300_TATA = REPO_ROOT / "data" / "gue" / "prom" / "prom_300_tata"

# NucleotideTokenizer's vocabulary: <cls>=0 <pad>=1 <eos>=2 <unk>=3 A=4 T=5 C=6 G=7 N=8 <mask>=9.
PAD, MASK = 1, 9
TOKENIZER = NucleotideTokenizer()


def prom_dataset(split: str, start: int, stop: int, length: int = 64) -> datasets.Dataset:
    """Rows ``start:stop`` of a prom_300_tata split, tokenized to ``length`` tokens, with ``labels``."""
    table = datasets.load_dataset("csv", data_files=str(PROM_300_TATA / f"{split}.csv"), split="train")
    rows = table.select(range(start, stop))
    encoded = TOKENIZER(list(rows["sequence"]), truncation=True, max_length=length)
    return datasets.Dataset.from_dict({**encoded, "labels": list(rows["label"])})


def tiny_bert(seed: int = 0, dropout: float = 0.0) -> BertForSequenceClassification:
    """A 2-layer BERT classifier (head: ``classifier`` Linear): any HF sequence classifier should work."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=10,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        pad_token_id=PAD,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def _rotate_nucleotides(batch: dict, every: int, offset: int) -> dict:
    ids = batch["input_ids"].clone()
    positions = torch.zeros_like(ids, dtype=torch.bool)
    positions[:, offset::every] = True
    positions &= (ids >= 4) & (ids <= 7)
    ids[positions] = (ids[positions] - 4 + 1) % 4 + 4
    return {**batch, "input_ids": ids}


def weak_view(batch: dict) -> dict:
    """Deterministic light mutation (every 11th nucleotide rotated A->T->C->G->A)."""
    return _rotate_nucleotides(batch, every=11, offset=1)


def strong_view(batch: dict) -> dict:
    """Deterministic heavy view: every 3rd nucleotide rotated, every 5th masked."""
    out = _rotate_nucleotides(batch, every=3, offset=2)
    ids = out["input_ids"].clone()
    nucleotide = (ids >= 4) & (ids <= 8)
    masked = torch.zeros_like(nucleotide)
    masked[:, 3::5] = True
    ids[masked & nucleotide] = MASK
    return {**out, "input_ids": ids}
