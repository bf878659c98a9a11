"""K-mer tokenizer: overlapping (DNABERT) or non-overlapping (Nucleotide Transformer) k-mers."""

import itertools

import numpy as np

from .tokenization_utils_nucleotide import (
    INVALID_PLACEHOLDER,
    N_CODE,
    NucleotideAlphabet,
    NucleotideTokenizerBase,
    build_vocab,
    load_vocab,
    ranges_within,
)

MAX_K = 8


def all_kmers(letters: str, k: int) -> list[str]:
    """The `len(letters) ** k` k-mers in lexicographic order of `letters` (the order of their base-4 codes)."""
    return ["".join(kmer) for kmer in itertools.product(letters, repeat=k)]


class KmerTokenizer(NucleotideTokenizerBase):
    """K-mers of a nucleotide sequence, framed as `[CLS] ... [SEP]`.

    `stride=1` gives DNABERT's overlapping k-mers (Ji et al., 2021, "DNABERT: pre-trained Bidirectional Encoder
    Representations from Transformers model for DNA-language in genome"): L - k + 1 tokens for L nucleotides.
    `stride=k` gives Nucleotide Transformer's non-overlapping k-mers (Dalla-Torre et al., 2024). Nucleotides after the
    last full k-mer become single-nucleotide tokens. A k-mer containing `N` or an ambiguity code is `[UNK]`.

    The default vocabulary is `[PAD] [UNK] [CLS] [SEP] [MASK]`, the 4^k k-mers in lexicographic `ACGT` order, then
    `A C G T`. A `vocab.txt` in any order may be given instead (DNABERT's files give DNABERT's ids).

    Example:

    ```python
    >>> from hf_genomics import KmerTokenizer
    >>> tokenizer = KmerTokenizer(k=3, stride=1)
    >>> tokenizer.tokenize("ACGTA")
    ['ACG', 'CGT', 'GTA']
    >>> tokenizer.decode(tokenizer("ACGTA")["input_ids"], skip_special_tokens=True)
    'ACGTA'
    >>> KmerTokenizer(k=3, stride=3).tokenize("ACGTA")
    ['ACG', 'T', 'A']

    ```
    """

    def __init__(
        self,
        vocab_file: str | None = None,
        k: int = 6,
        stride: int = 1,
        alphabet: str = "dna",
        invalid_to_unk: bool = False,
        pad_token: str = "[PAD]",
        unk_token: str = "[UNK]",
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        mask_token: str = "[MASK]",
        model_max_length: int = 512,
        **kwargs,
    ):
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ValueError(f"k must be an integer from 1 to {MAX_K}, got {k!r}.")
        if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= k:
            raise ValueError(
                f"stride must be an integer from 1 (overlapping k-mers) to k={k} (non-overlapping), got {stride!r}."
            )
        self.k = k
        self.stride = stride
        self.nucleotide_alphabet = NucleotideAlphabet(alphabet, invalid_to_unk)
        letters = self.nucleotide_alphabet.letters
        kmers = all_kmers(letters, k)
        if vocab_file is not None:
            self.vocab = load_vocab(vocab_file)
        else:
            singles = [letter for letter in letters if k > 1]
            self.vocab = build_vocab([pad_token, unk_token, cls_token, sep_token, mask_token] + kmers + singles)
        missing = [kmer for kmer in kmers if kmer not in self.vocab]
        if missing:
            raise ValueError(
                f"The vocabulary lacks {len(missing)} of the {len(kmers)} {k}-mers over {letters} "
                f"(e.g. {missing[0]!r}); "
                f"check that k={k} matches the vocabulary file."
            )
        super().__init__(
            k=k,
            stride=stride,
            alphabet=alphabet,
            invalid_to_unk=invalid_to_unk,
            pad_token=pad_token,
            unk_token=unk_token,
            cls_token=cls_token,
            sep_token=sep_token,
            mask_token=mask_token,
            model_max_length=model_max_length,
            special_tokens_pattern="cls_sep",
            **kwargs,
        )
        # Lookup tables for the batch path: window code (base 5 over `ACGTN`, first nucleotide most significant) ->
        # id, the unknown token for any window with an N; nucleotide code -> id of the single-nucleotide token (the
        # unknown token where the vocabulary has none).
        powers = np.arange(k - 1, -1, -1)
        digits = np.arange(5**k)[:, None] // 5**powers % 5
        kmer_ids = np.array([self.vocab[kmer] for kmer in kmers], dtype=np.int64)
        base4_codes = (np.minimum(digits, 3) * 4**powers).sum(axis=1)
        self._window_ids = np.where((digits == N_CODE).any(axis=1), self.unk_token_id, kmer_ids[base4_codes])
        self._single_ids = np.array(self.convert_tokens_to_ids(list(letters + "N")), dtype=np.int64)

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        sequence = self.nucleotide_alphabet.normalize(text)
        k, stride = self.k, self.stride
        starts = range(0, len(sequence) - k + 1, stride)
        unknown = ("N", INVALID_PLACEHOLDER)
        tokens = [sequence[i : i + k] for i in starts]
        tokens = [self.unk_token if any(c in token for c in unknown) else token for token in tokens]
        covered = starts[-1] + k if starts else 0
        return tokens + list(sequence[covered:])

    def _encode_codes(self, codes: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k, stride = self.k, self.stride
        n_windows = np.where(lengths >= k, (lengths - k) // stride + 1, 0)
        covered = np.where(n_windows > 0, (n_windows - 1) * stride + k, 0)
        n_tail = lengths - covered
        counts = n_windows + n_tail
        if not n_windows.any():
            return self._single_ids[codes], counts
        # Base-5 code (digit 4 = N) of the k-mer starting at every position of the concatenation; windows that
        # straddle two sequences are computed and dropped below.
        n_positions = len(codes) - k + 1
        values = codes[:n_positions].astype(np.int32)
        for offset in range(1, k):
            values *= 5
            values += codes[offset : offset + n_positions]
        sequence_end = np.cumsum(lengths)
        if stride == 1 and not n_tail.any():
            # DNABERT's case: every window of every sequence, i.e. all positions but the k - 1 before each boundary.
            straddling = (sequence_end[:-1, None] - k + 1 + np.arange(k - 1)).ravel()
            keep = np.ones(n_positions, dtype=bool)
            keep[straddling] = False
            return self._window_ids[values[keep]], counts

        sequence_start = sequence_end - lengths
        token_start = np.cumsum(counts) - counts
        ids = np.empty(int(counts.sum()), dtype=np.int64)
        within = ranges_within(n_windows)
        positions = np.repeat(sequence_start, n_windows) + within * stride
        ids[np.repeat(token_start, n_windows) + within] = self._window_ids[values[positions]]
        within = ranges_within(n_tail)
        positions = np.repeat(sequence_start + covered, n_tail) + within
        ids[np.repeat(token_start + n_windows, n_tail) + within] = self._single_ids[codes[positions]]
        return ids, counts

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        """Merges the overlaps of consecutive k-mers back into the nucleotide sequence.

        Special tokens other than `[UNK]`/`[MASK]` are kept verbatim and separate runs of k-mers; a nucleotide that
        only unknown or masked k-mers cover is written `N`.
        """
        pieces, run = [], []
        unknown = {self.unk_token, self.mask_token}
        for token in tokens:
            if token in unknown or token not in self.all_special_tokens:
                run.append(token)
            else:
                pieces.append(self._merge_kmers(run))
                pieces.append(token)
                run = []
        pieces.append(self._merge_kmers(run))
        return "".join(pieces)

    def _merge_kmers(self, tokens: list[str]) -> str:
        if not tokens:
            return ""
        k, stride = self.k, self.stride
        unknown = {self.unk_token, self.mask_token}
        # Single-nucleotide tokens only ever follow the k-mers; an unknown token after one is a single one too.
        n_windows = len(tokens)
        if k > 1:
            for index, token in enumerate(tokens):
                if token not in unknown and len(token) == 1:
                    n_windows = index
                    break
        windows, singles = tokens[:n_windows], tokens[n_windows:]
        length = (n_windows - 1) * stride + k if n_windows else 0
        merged = np.full(length, ord("N"), dtype=np.uint8)
        known = [index for index, token in enumerate(windows) if token not in unknown]
        if known:
            letters = np.frombuffer("".join(windows[index] for index in known).encode("ascii"), dtype=np.uint8)
            positions = (np.array(known)[:, None] * stride + np.arange(k)).ravel()
            # The first k-mer that covers a position names its nucleotide.
            first_positions, first = np.unique(positions, return_index=True)
            merged[first_positions] = letters[first]
        tail = "".join("N" if token in unknown else token for token in singles)
        return merged.tobytes().decode("ascii") + tail


KmerTokenizer.register_for_auto_class("AutoTokenizer")

__all__ = ["KmerTokenizer", "all_kmers"]
