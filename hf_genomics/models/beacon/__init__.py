"""BEACON-B: BERT-style encoder with ALiBi (Ren et al., 2024, BEACON benchmark)."""
