"""The examples in the package's docstrings run and print what they say (paths relative to the repository)."""

import doctest
import importlib

import pytest

MODULES = [
    "hf_genomics.corpus",
    "hf_genomics.data.collator_packing",
    "hf_genomics.data.collator_randommask",
    "hf_genomics.io.fasta",
    "hf_genomics.models.baselines.configuration_baselines",
    "hf_genomics.models.baselines.modeling_baselines",
    "hf_genomics.models.beacon.configuration_beacon",
    "hf_genomics.tokenization_kmer",
    "hf_genomics.tokenization_nucleotide",
    "hf_genomics.tokenizer_compatibility",
    "hf_genomics.training.ema",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch, data_dir):
    monkeypatch.chdir(data_dir.parent)
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
