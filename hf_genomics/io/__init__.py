"""Readers for sequence file formats."""

from .fasta import read_fasta, split_on_n_runs

__all__ = ["read_fasta", "split_on_n_runs"]
