"""Readers for sequence file formats."""

from .fasta import read_fasta, split_on_n_runs
from .nrc import read_nrc

__all__ = ["read_fasta", "read_nrc", "split_on_n_runs"]
