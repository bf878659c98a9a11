"""Machinery shared by the nucleotide tokenizers: alphabet checks, vocabulary files and the vectorised batch path.

Self-contained (stdlib, numpy, transformers) because `save_pretrained` copies it next to the tokenizer modules, so a
saved folder loads with `trust_remote_code=True` where hf_genomics is not installed.
"""

import os
import re
from collections import OrderedDict

import numpy as np
from transformers import PreTrainedTokenizer
from transformers.tokenization_utils_base import BatchEncoding, PaddingStrategy, TruncationStrategy

AMBIGUITY_CODES = "RYKMSWBDHV"
# Canonical nucleotide letters in lexicographic order; their index is the base-4 digit of a k-mer code.
ALPHABET_LETTERS = {"dna": "ACGT", "rna": "ACGU"}
N_CODE = 4
INVALID_CODE = 255
# Stands for a character the user asked to map to the unknown token; it is in no vocabulary.
INVALID_PLACEHOLDER = "?"


def load_vocab(vocab_file: str) -> "OrderedDict[str, int]":
    """Reads a one-token-per-line vocabulary (BERT/ESM `vocab.txt`): the line number is the id."""
    vocab = OrderedDict()
    with open(vocab_file, encoding="utf-8") as reader:
        for index, line in enumerate(reader):
            token = line.rstrip("\r\n")
            if token in vocab:
                raise ValueError(
                    f"Token {token!r} appears twice in {vocab_file} (lines {vocab[token] + 1} and {index + 1})."
                )
            vocab[token] = index
    return vocab


def build_vocab(tokens: list[str]) -> "OrderedDict[str, int]":
    return OrderedDict((token, index) for index, token in enumerate(tokens))


class NucleotideAlphabet:
    """Reads nucleotide text case-insensitively: RNA `U` (or DNA `T` for `"rna"`) is folded onto the other letter and
    the IUPAC ambiguity codes onto `N`; anything else is rejected, or mapped to the unknown token on request."""

    def __init__(self, alphabet: str = "dna", invalid_to_unk: bool = False):
        if alphabet not in ALPHABET_LETTERS:
            raise ValueError(f"alphabet must be one of {sorted(ALPHABET_LETTERS)}, got {alphabet!r}.")
        self.letters = ALPHABET_LETTERS[alphabet]
        self.invalid_to_unk = invalid_to_unk
        folded = {"dna": ("U", "T"), "rna": ("T", "U")}[alphabet]
        mapping = {letter: letter for letter in self.letters + "N"}
        mapping[folded[0]] = folded[1]
        mapping.update({code: "N" for code in AMBIGUITY_CODES})
        mapping.update({source.lower(): target for source, target in list(mapping.items())})
        self._translation = str.maketrans(mapping)
        self._not_canonical = re.compile(f"[^{self.letters}N]")
        # Byte -> code table for the batch path: 0-3 the letters, 4 N, 255 anything else.
        self.code_table = np.full(256, INVALID_CODE, dtype=np.uint8)
        for source, target in mapping.items():
            self.code_table[ord(source)] = (self.letters + "N").index(target)
        self.description = (
            f"{', '.join(self.letters)}, N, {folded[0]} (read as {folded[1]}) and the IUPAC ambiguity codes "
            f"{', '.join(AMBIGUITY_CODES)} (read as N), in upper or lower case"
        )

    def normalize(self, text: str) -> str:
        """Returns `text` in canonical letters (`ACGTN` or `ACGUN`), raising on any other character."""
        if not text:
            raise ValueError(f"Empty sequence: expected at least one nucleotide ({self.description}).")
        canonical = text.translate(self._translation)
        bad = self._not_canonical.search(canonical)
        if bad is None:
            return canonical
        if self.invalid_to_unk:
            return self._not_canonical.sub(INVALID_PLACEHOLDER, canonical)
        position = bad.start()
        preview = text if len(text) <= 60 else text[:57] + "..."
        raise ValueError(
            f"Invalid character {text[position]!r} at position {position} of sequence {preview!r}. Accepted: "
            f"{self.description}. Pass `invalid_to_unk=True` to read other characters as the unknown token."
        )

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """Codes of the concatenated `texts` and their lengths, or None if any text is empty or holds a character
        outside the alphabet (the per-sequence path then raises the precise error or handles special tokens)."""
        joined = "".join(texts)
        try:
            raw = joined.encode("ascii")
        except UnicodeEncodeError:
            return None
        codes = self.code_table[np.frombuffer(raw, dtype=np.uint8)]
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        if (lengths == 0).any() or (codes == INVALID_CODE).any():
            return None
        return codes, lengths


def ranges_within(lengths: np.ndarray) -> np.ndarray:
    """Concatenation of `arange(n)` for each `n` in `lengths`."""
    starts = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)


class NucleotideTokenizerBase(PreTrainedTokenizer):
    """Vocabulary handling and the vectorised batch path shared by `NucleotideTokenizer` and `KmerTokenizer`.

    Subclasses set `self.vocab` and `self.nucleotide_alphabet` (a `NucleotideAlphabet`) before `super().__init__()`
    and implement `_tokenize` (per sequence, the reference) and `_encode_codes` (the same ids for a whole batch, with
    numpy: token ids of the concatenated sequences, without special tokens, and the token count of each sequence).
    """

    vocab_files_names = {"vocab_file": "vocab.txt"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, **kwargs):
        self.ids_to_tokens = OrderedDict((index, token) for token, index in self.vocab.items())
        kwargs.setdefault("clean_up_tokenization_spaces", False)
        super().__init__(**kwargs)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab, **self._added_tokens_encoder)

    def _convert_token_to_id(self, token: str) -> int:
        if token in self.vocab:
            return self.vocab[token]
        # The unknown token may have been appended by `PythonBackend` when a custom vocabulary lacks it.
        return self.vocab.get(self.unk_token, self._added_tokens_encoder.get(self.unk_token))

    def _convert_id_to_token(self, index: int) -> str:
        return self.ids_to_tokens.get(index, self.unk_token)

    def prepare_for_tokenization(self, text, is_split_into_words=False, **kwargs):
        if isinstance(text, str) and not text:
            # The base class would silently return only the framing tokens.
            self.nucleotide_alphabet.normalize(text)
        return text, kwargs

    def _decode(self, token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=None, **kwargs) -> str:
        if skip_special_tokens:
            # Framing and padding go, but unknown and masked tokens keep their place in the sequence.
            token_ids = [token_ids] if isinstance(token_ids, int) else token_ids
            dropped = set(self.all_special_ids) - {self.unk_token_id, self.mask_token_id}
            token_ids = [index for index in token_ids if int(index) not in dropped]
        return super()._decode(token_ids, False, clean_up_tokenization_spaces, **kwargs)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        vocab_file = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "vocab.txt")
        with open(vocab_file, "w", encoding="utf-8") as writer:
            writer.write("".join(f"{token}\n" for token, _ in sorted(self.vocab.items(), key=lambda item: item[1])))
        return (vocab_file,)

    def _check_room_for_sequence(self, truncation_strategy, max_length, add_special_tokens):
        num_special = self.num_special_tokens_to_add() if add_special_tokens else 0
        if truncation_strategy != TruncationStrategy.DO_NOT_TRUNCATE and max_length is not None:
            if max_length <= num_special:
                raise ValueError(
                    f"max_length={max_length} leaves no room for the sequence next to the {num_special} special "
                    f"tokens; use max_length >= {num_special + 1}."
                )
        return num_special

    def _encode_plus(
        self,
        text,
        text_pair=None,
        add_special_tokens=True,
        padding_strategy=PaddingStrategy.DO_NOT_PAD,
        truncation_strategy=TruncationStrategy.DO_NOT_TRUNCATE,
        max_length=None,
        stride=0,
        is_split_into_words=False,
        pad_to_multiple_of=None,
        padding_side=None,
        return_tensors=None,
        return_token_type_ids=None,
        return_attention_mask=None,
        return_overflowing_tokens=False,
        return_special_tokens_mask=False,
        return_length=False,
        verbose=True,
        **kwargs,
    ) -> BatchEncoding:
        num_special = self._check_room_for_sequence(truncation_strategy, max_length, add_special_tokens)
        vectorisable = (
            isinstance(text, (list, tuple))
            and len(text) > 0
            and text_pair is None
            and not is_split_into_words
            and not return_overflowing_tokens
            and not kwargs.get("return_offsets_mapping")
            and all(isinstance(sequence, str) for sequence in text)
            and not self._has_nucleotide_added_tokens()
        )
        encoded = self.nucleotide_alphabet.encode(text) if vectorisable else None
        if encoded is None:
            try:
                return super()._encode_plus(
                    text,
                    text_pair=text_pair,
                    add_special_tokens=add_special_tokens,
                    padding_strategy=padding_strategy,
                    truncation_strategy=truncation_strategy,
                    max_length=max_length,
                    stride=stride,
                    is_split_into_words=is_split_into_words,
                    pad_to_multiple_of=pad_to_multiple_of,
                    padding_side=padding_side,
                    return_tensors=return_tensors,
                    return_token_type_ids=return_token_type_ids,
                    return_attention_mask=return_attention_mask,
                    return_overflowing_tokens=return_overflowing_tokens,
                    return_special_tokens_mask=return_special_tokens_mask,
                    return_length=return_length,
                    verbose=verbose,
                    **kwargs,
                )
            except ValueError as error:
                self._raise_with_batch_index(text, text_pair, is_split_into_words, error)
                raise
        token_ids, token_counts = self._encode_codes(*encoded)
        return self._batch_from_ids(
            token_ids,
            token_counts,
            num_special=num_special,
            add_special_tokens=add_special_tokens,
            padding_strategy=padding_strategy,
            truncation_strategy=truncation_strategy,
            max_length=max_length,
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_tensors=return_tensors,
            return_token_type_ids=return_token_type_ids,
            return_attention_mask=return_attention_mask,
            return_special_tokens_mask=return_special_tokens_mask,
            return_length=return_length,
            verbose=verbose,
        )

    def _raise_with_batch_index(self, text, text_pair, is_split_into_words, error: ValueError) -> None:
        """After the per-sequence path failed on a batch, raises `error`'s message prefixed with the batch index of
        the first sequence that cannot be tokenized; returns if `text` is no batch or no sequence is at fault."""
        batched = isinstance(text, (list, tuple)) and len(text) > 0
        batched = batched and isinstance(text[0], (list, tuple) if is_split_into_words else (str, list, tuple))
        if not batched:
            return
        pairs = text_pair if isinstance(text_pair, (list, tuple)) else [None] * len(text)
        for index, (item, pair) in enumerate(zip(text, pairs)):
            pieces = [item, pair] if isinstance(item, str) else [*item, pair]
            for piece in pieces:
                if not isinstance(piece, str):
                    continue
                try:
                    # Cheap screen first; `tokenize` then decides, since it also splits out added tokens (`<mask>`).
                    self.nucleotide_alphabet.normalize(piece)
                except ValueError:
                    try:
                        self.tokenize(piece)
                    except ValueError as cause:
                        raise ValueError(f"sequence {index} of the batch: {cause}") from error

    def _has_nucleotide_added_tokens(self) -> bool:
        # An added token spelt with nucleotide letters is split out by the per-sequence path's trie; the batch path
        # cannot see it, so such tokenizers always take the per-sequence path.
        letters = set(self.nucleotide_alphabet.letters + "N" + AMBIGUITY_CODES + "TU")
        return any(set(token.upper()) <= letters for token in self._added_tokens_encoder)

    def _batch_from_ids(
        self,
        token_ids,
        token_counts,
        num_special,
        add_special_tokens,
        padding_strategy,
        truncation_strategy,
        max_length,
        pad_to_multiple_of,
        padding_side,
        return_tensors,
        return_token_type_ids,
        return_attention_mask,
        return_special_tokens_mask,
        return_length,
        verbose,
    ) -> BatchEncoding:
        """Frames, truncates and pads a batch exactly as `PythonBackend._encode_plus` followed by `pad` would."""
        if return_token_type_ids is None:
            return_token_type_ids = "token_type_ids" in self.model_input_names
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names
        batch_size = len(token_counts)
        kept = token_counts
        if truncation_strategy in (TruncationStrategy.LONGEST_FIRST, TruncationStrategy.ONLY_FIRST) and max_length:
            kept = np.minimum(token_counts, max_length - num_special)
            within = ranges_within(token_counts)
            if self.truncation_side == "left":
                keep = within >= np.repeat(token_counts - kept, token_counts)
            else:
                keep = within < np.repeat(kept, token_counts)
            token_ids = token_ids[keep]
        lengths = kept + num_special
        longest = int(lengths.max())
        self._eventual_warn_about_too_long_sequence(range(longest), max_length, verbose)

        if padding_strategy == PaddingStrategy.LONGEST:
            width = longest
        elif padding_strategy == PaddingStrategy.MAX_LENGTH:
            width = max_length
        else:
            width = longest if int(lengths.min()) == longest else None
        if width is not None and pad_to_multiple_of is not None and padding_strategy != PaddingStrategy.DO_NOT_PAD:
            width = -(-width // pad_to_multiple_of) * pad_to_multiple_of

        if add_special_tokens:
            framed = self.build_inputs_with_special_tokens([-1])
            prefix, suffix = framed[: framed.index(-1)], framed[framed.index(-1) + 1 :]
        else:
            prefix, suffix = [], []

        if width is None or longest > width:
            # Ragged result: build the lists and let transformers pad (or refuse tensors) as it always does.
            splits = np.cumsum(kept)[:-1]
            rows = [prefix + part.tolist() + suffix for part in np.split(token_ids, splits)]
            outputs = {"input_ids": rows}
            if return_token_type_ids:
                outputs["token_type_ids"] = [[0] * len(row) for row in rows]
            if return_special_tokens_mask:
                outputs["special_tokens_mask"] = [
                    [1] * len(prefix) + [0] * int(count) + [1] * len(suffix) for count in kept
                ]
            if return_length:
                outputs["length"] = lengths.tolist()
            outputs = self.pad(
                outputs,
                padding=padding_strategy.value,
                max_length=max_length,
                pad_to_multiple_of=pad_to_multiple_of,
                padding_side=padding_side,
                return_attention_mask=return_attention_mask,
            )
            return BatchEncoding(outputs, tensor_type=return_tensors)

        side = padding_side if padding_side is not None else self.padding_side
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}.")
        start = width - lengths if side == "left" else np.zeros(batch_size, dtype=np.int64)
        columns = np.arange(width)
        content_start = start + len(prefix)
        is_content = (columns >= content_start[:, None]) & (columns < (content_start + kept)[:, None])
        input_ids = np.full((batch_size, width), self.pad_token_id, dtype=np.int64)
        input_ids[is_content] = token_ids
        rows = np.arange(batch_size)
        for offset, special_id in enumerate(prefix):
            input_ids[rows, start + offset] = special_id
        for offset, special_id in enumerate(suffix):
            input_ids[rows, content_start + kept + offset] = special_id
        is_real = (columns >= start[:, None]) & (columns < (start + lengths)[:, None])

        outputs = {"input_ids": input_ids}
        if return_token_type_ids:
            outputs["token_type_ids"] = np.where(is_real, 0, self.pad_token_type_id).astype(np.int64)
        if return_special_tokens_mask:
            outputs["special_tokens_mask"] = (~is_content).astype(np.int64)
        if return_length:
            outputs["length"] = lengths
        if return_attention_mask:
            outputs["attention_mask"] = is_real.astype(np.int64)
        if return_tensors is None:
            outputs = {key: value.tolist() for key, value in outputs.items()}
        elif return_tensors == "pt":
            import torch  # only needed, and then installed, for PyTorch tensors

            # `BatchEncoding` would copy numpy arrays through `torch.tensor`; sharing the memory is free.
            outputs = {key: torch.from_numpy(value) for key, value in outputs.items()}
        return BatchEncoding(outputs, tensor_type=return_tensors)
