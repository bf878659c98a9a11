"""Single-nucleotide tokenizer with BEACON-B's vocabulary."""

import numpy as np

from .tokenization_utils_nucleotide import NucleotideAlphabet, NucleotideTokenizerBase, build_vocab, load_vocab

# BEACON-B's `vocab.txt`, in file order, so official checkpoints line up with our ids.
BEACON_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", "A", "T", "C", "G", "N", "<mask>"]


class NucleotideTokenizer(NucleotideTokenizerBase):
    """One token per nucleotide, framed as `<cls> ... <eos>`, as in BEACON-B (Ren et al., 2024, "BEACON: Benchmark for
    Comprehensive RNA Tasks and Language Models").

    Input is case-insensitive; `U` is read as `T` (or, with `alphabet="rna"` for a vocabulary of `A C G U`, `T` as
    `U`); the IUPAC ambiguity codes become `N`. Any other character raises a `ValueError` unless `invalid_to_unk=True`.

    Example:

    ```python
    >>> from hf_genomics import NucleotideTokenizer
    >>> tokenizer = NucleotideTokenizer()
    >>> tokenizer("acgUR")["input_ids"]
    [0, 4, 6, 7, 5, 8, 2]
    >>> tokenizer.decode([0, 4, 6, 7, 5, 8, 2], skip_special_tokens=True)
    'ACGTN'

    ```
    """

    k = 1
    stride = 1

    def __init__(
        self,
        vocab_file: str | None = None,
        alphabet: str = "dna",
        invalid_to_unk: bool = False,
        cls_token: str = "<cls>",
        pad_token: str = "<pad>",
        eos_token: str = "<eos>",
        unk_token: str = "<unk>",
        mask_token: str = "<mask>",
        sep_token: str | None = None,
        model_max_length: int = 1026,
        **kwargs,
    ):
        self.vocab = load_vocab(vocab_file) if vocab_file is not None else build_vocab(BEACON_VOCAB)
        self.nucleotide_alphabet = NucleotideAlphabet(alphabet, invalid_to_unk)
        missing = [letter for letter in self.nucleotide_alphabet.letters if letter not in self.vocab]
        if missing:
            raise ValueError(
                f"The vocabulary lacks the nucleotide token(s) {missing} of alphabet={alphabet!r}; "
                f"it must contain each of {list(self.nucleotide_alphabet.letters)}."
            )
        super().__init__(
            alphabet=alphabet,
            invalid_to_unk=invalid_to_unk,
            cls_token=cls_token,
            pad_token=pad_token,
            eos_token=eos_token,
            # `<eos>` closes each sequence of a pair too, as in ESM/BEACON.
            sep_token=eos_token if sep_token is None else sep_token,
            unk_token=unk_token,
            mask_token=mask_token,
            model_max_length=model_max_length,
            special_tokens_pattern="cls_sep",
            **kwargs,
        )
        # Code -> id for the batch path; `N` falls back to the unknown token if the vocabulary has none.
        letters = self.nucleotide_alphabet.letters + "N"
        self._code_to_id = np.array(self.convert_tokens_to_ids(list(letters)), dtype=np.int64)

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        return list(self.nucleotide_alphabet.normalize(text))

    def _encode_codes(self, codes: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._code_to_id[codes], lengths

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)


NucleotideTokenizer.register_for_auto_class("AutoTokenizer")

__all__ = ["NucleotideTokenizer"]
