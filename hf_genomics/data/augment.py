"""Sequence augmentations on batched token ids, for every tokenizer hf_genomics ships.

Each augmentation is a small callable class ``aug(batch) -> batch`` working on a padded ``Trainer`` batch
(``input_ids`` (B, L), ``attention_mask``, optional per-token ``labels`` (B, L)). Framing special tokens
(``<cls>``/``[CLS]``, ``<eos>``/``[SEP]``) and padding never move; everything else in a row (nucleotide or
k-mer tokens, ``[UNK]``, ``[MASK]``) is the row's *content*, which must be one contiguous run.

Token ids are related to nucleotides through lookup tables built once from the tokenizer's vocabulary, so
every operation is a gather over the batch (no Python loop over positions). Supported layouts:
``NucleotideTokenizer`` (k=1), ``KmerTokenizer`` with ``stride=1`` (overlapping) and ``stride=k``
(non-overlapping, trailing single nucleotides for the remainder).

Randomness comes from a private ``torch.Generator`` when ``seed`` is given (reseed with ``manual_seed``),
otherwise from torch's global RNG.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

NUCLEOTIDES = "ACGT"
_UNKNOWN = -1  # nucleotide code of a position whose base is not known (N, or hidden behind [UNK]/[MASK])
_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


def reverse_complement(sequence: str) -> str:
    """Reverse complement of an upper-case DNA string (``N`` maps to ``N``)."""
    return sequence.translate(_COMPLEMENT)[::-1]


def reverse_complement_probability(strand_specific: bool, override: float | None = None) -> float:
    """Probability of reverse-complementing a training view: ``override`` when given, else 0 for strand-specific
    data (an RNA's reverse complement is another molecule; a promoter or splice site read on the other strand points
    away from its gene, so labels do not carry over) and 0.5, either strand equally often, for double-stranded DNA
    whose label holds on both strands (protein binding, chromatin marks, genome pretraining)."""
    if override is None:
        return 0.0 if strand_specific else 0.5
    if not 0.0 <= override <= 1.0:
        raise ValueError(f"The reverse-complement probability must be in [0, 1], got {override}.")
    return float(override)


def nucleotide_letters(tokenizer) -> str:
    """The four base letters of ``tokenizer``'s alphabet: ``ACGT``, or ``ACGU`` for an RNA tokenizer."""
    return getattr(getattr(tokenizer, "nucleotide_alphabet", None), "letters", NUCLEOTIDES)


class TokenLayout:
    """Lookup tables relating a tokenizer's ids to nucleotides.

    ``codes[id]`` holds the nucleotide codes (index in ``ACGT``/``ACGU``; ``-1`` for N / not a base) of the token,
    ``k`` columns wide (single nucleotides fill column 0). ``complement[id]`` is the id of the token's
    reverse complement (specials, ``[UNK]`` and ``[MASK]`` map to themselves).
    """

    def __init__(self, tokenizer):
        self.k = int(getattr(tokenizer, "k", 1))
        self.stride = int(getattr(tokenizer, "stride", 1))
        if self.k < 1 or self.stride not in (1, self.k):
            raise ValueError(
                f"Augmentations support k >= 1 with stride 1 (overlapping) or stride k (non-overlapping); "
                f"got k={self.k}, stride={self.stride}."
            )
        self.overlapping = self.k > 1 and self.stride == 1
        # Base codes follow the tokenizer's letters (ACGT, or ACGU for RNA): code 3 - c complements code c.
        self.letters = nucleotide_letters(tokenizer)
        complement = str.maketrans(self.letters + "N", self.letters[::-1] + "N")
        vocab = tokenizer.get_vocab()
        size = max(vocab.values()) + 1
        self.pad_id = tokenizer.pad_token_id
        self.mask_id = tokenizer.mask_token_id
        self.unk_id = tokenizer.unk_token_id
        if self.pad_id is None or self.mask_id is None or self.unk_id is None:
            raise ValueError("The tokenizer needs pad, mask and unk tokens for augmentations.")
        special = set(tokenizer.all_special_ids)
        framing = special - {self.mask_id, self.unk_id}
        self.is_framing = torch.zeros(size, dtype=torch.bool)
        self.is_framing[sorted(framing)] = True

        self.codes = torch.full((size, self.k), _UNKNOWN, dtype=torch.long)
        self.is_kmer = torch.zeros(size, dtype=torch.bool)
        self.complement = torch.arange(size)
        base_index = {base: i for i, base in enumerate(self.letters)}
        for token, idx in vocab.items():
            if idx in special or not token or set(token) - set(self.letters + "N") or len(token) not in (1, self.k):
                continue
            self.codes[idx, : len(token)] = torch.tensor([base_index.get(base, _UNKNOWN) for base in token])
            self.is_kmer[idx] = len(token) == self.k and "N" not in token
            self.complement[idx] = vocab.get(token.translate(complement)[::-1], self.unk_id)

        # Id of every k-mer by its base-4 index (A=0 ... T=3, most significant base first) and of each base.
        self.kmer_ids = torch.full((4**self.k,), -1, dtype=torch.long)
        kmer_rows = self.is_kmer.nonzero().squeeze(1)
        self.kmer_ids[self._kmer_index(self.codes[kmer_rows])] = kmer_rows
        self.base_ids = torch.tensor([vocab.get(base, -1) for base in self.letters])
        if (self.kmer_ids < 0).any():
            raise ValueError(f"The tokenizer's vocabulary lacks some of the {4**self.k} {self.k}-mers over {self.letters}.")
        if self.k > 1 and not self.overlapping and (self.base_ids < 0).any():
            raise ValueError(f"A non-overlapping k-mer vocabulary needs the single bases {self.letters} for remainders.")
        self.random_ids = self.kmer_ids if self.k > 1 else self.base_ids

    def _kmer_index(self, codes: torch.Tensor) -> torch.Tensor:
        weights = 4 ** torch.arange(self.k - 1, -1, -1, device=codes.device)
        return (codes.clamp(min=0) * weights).sum(-1)

    def to(self, device: torch.device) -> "TokenLayout":
        for name in ("is_framing", "codes", "is_kmer", "complement", "kmer_ids", "base_ids", "random_ids"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def content(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Content mask (B, L), start (B, 1) and length (B, 1) of every row; checks the batch."""
        input_ids = batch.get("input_ids")
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError("Augmentations expect batch['input_ids'] as a (batch, length) tensor.")
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= len(self.is_framing)):
            raise ValueError(f"input_ids must be token ids in [0, {len(self.is_framing)}) of the tokenizer's vocabulary.")
        attention_mask = batch.get("attention_mask")
        if attention_mask is None:
            attention_mask = input_ids != self.pad_id
        elif attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} != input_ids {tuple(input_ids.shape)}.")
        content = attention_mask.bool() & ~self.is_framing[input_ids]
        length = content.sum(1, keepdim=True)
        start = content.int().argmax(1, keepdim=True)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        if not torch.equal(content, (positions >= start) & (positions < start + length)):
            raise ValueError("Each row's sequence tokens must form one contiguous run between its special tokens.")
        return content, start, length

    def nucleotides(self, input_ids: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        """Base codes of overlapping k-mer rows: (B, L + k - 1), entry ``j + o`` = base ``o`` of token ``j``.

        A base is known when any k-mer covering it is known; bases covered only by ``[UNK]``/``[MASK]``
        stay unknown (N), so re-encoding reproduces those tokens.
        """
        batch_size, length = input_ids.shape
        codes = self.codes[input_ids]
        known = (content & self.is_kmer[input_ids]).unsqueeze(-1)
        codes = torch.where(known, codes, torch.full_like(codes, _UNKNOWN))
        bases = torch.full((batch_size, length + self.k - 1), _UNKNOWN, dtype=torch.long, device=input_ids.device)
        for offset in range(self.k):  # k passes over all positions at once
            window = bases[:, offset : offset + length]
            window.copy_(torch.where(codes[..., offset] >= 0, codes[..., offset], window))
        return bases

    def encode_overlapping(self, bases: torch.Tensor, length: int) -> torch.Tensor:
        """Inverse of :meth:`nucleotides`: k-mer ids of every window; ``[UNK]`` where a base is unknown."""
        windows = bases.unfold(1, self.k, 1)[:, :length]
        ids = self.kmer_ids[self._kmer_index(windows)]
        return torch.where((windows >= 0).all(-1), ids, torch.full_like(ids, self.unk_id))


def _permute_rows(batch: dict[str, torch.Tensor], source: torch.Tensor, keys: Sequence[str]) -> dict[str, torch.Tensor]:
    """``batch[key][b, i] <- batch[key][b, source[b, i]]`` for every per-token tensor among ``keys``."""
    out = dict(batch)
    for key in keys:
        value = batch.get(key)
        if isinstance(value, torch.Tensor) and value.shape == source.shape:
            out[key] = value.gather(1, source)
    return out


class TokenAugmentation:
    """Base class: holds the tokenizer's :class:`TokenLayout`, the ``seed`` and the random generator."""

    def __init__(self, tokenizer, seed: int | None = None):
        self.tokenizer = tokenizer
        self.layout = TokenLayout(tokenizer)
        self.seed = seed
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def manual_seed(self, seed: int) -> None:
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def _rand(self, *shape: int, device: torch.device) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator).to(device)

    def _randint(self, low: int, high: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return torch.randint(low, high, shape, generator=self.generator).to(device)

    def _prepare(self, batch: dict[str, torch.Tensor]):
        layout = self.layout.to(batch["input_ids"].device) if "input_ids" in batch else self.layout
        return layout, *layout.content(batch)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k not in ("tokenizer", "layout", "generator"))
        return f"{type(self).__name__}({fields})"


class ReverseComplement(TokenAugmentation):
    """Replace each row by its reverse complement with probability ``p``.

    Tokens are reversed and complemented through a lookup table: for k-mers that is the reversed order of
    the complemented k-mers, exactly the tokenization of the reverse-complement string for k=1 and for
    overlapping k-mers (``[UNK]`` k-mers map to ``[UNK]``, ``N`` to ``N``). Non-overlapping k-mers keep their
    chunk grid mirrored, so the tokens spell the reverse complement chunked from its other end (identical to
    re-tokenizing when the length is a multiple of k). Per-token ``labels`` are reversed with the sequence;
    set ``complement_labels=True`` when they are token ids (MLM targets) so they are complemented too.
    """

    def __init__(self, tokenizer, p: float = 0.5, seed: int | None = None, complement_labels: bool = False):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p}.")
        super().__init__(tokenizer, seed)
        self.p = p
        self.complement_labels = complement_labels

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        layout, content, start, length = self._prepare(batch)
        input_ids = batch["input_ids"]
        flip = (self._rand(input_ids.shape[0], device=input_ids.device) < self.p).unsqueeze(1) & content
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        source = torch.where(flip, 2 * start + length - 1 - positions, positions)
        out = _permute_rows(batch, source, ("input_ids", "labels"))
        out["input_ids"] = torch.where(flip, layout.complement[out["input_ids"]], out["input_ids"])
        labels = out.get("labels")
        if self.complement_labels and isinstance(labels, torch.Tensor) and labels.shape == input_ids.shape:
            out["labels"] = torch.where(flip & (labels >= 0), layout.complement[labels.clamp(min=0)], labels)
        return out


class RandomShift(TokenAugmentation):
    """Circularly shift each row's sequence by a uniform ``s`` in ``[-max_shift, max_shift]`` token positions.

    This is the translocation augmentation of FinDNA's teacher view. ``s`` counts tokens: nucleotides for
    k=1 and overlapping k-mers (whose bases are rotated and re-tokenized, so the k-mers across the join are
    real k-mers of the shifted sequence), whole chunks for non-overlapping k-mers. Per-token ``labels``
    move with their tokens. Overlapping k-mer rows must not contain ``[MASK]`` (shift before masking).
    """

    def __init__(self, tokenizer, max_shift: int = 20, seed: int | None = None):
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}.")
        super().__init__(tokenizer, seed)
        self.max_shift = max_shift

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        layout, content, start, length = self._prepare(batch)
        input_ids = batch["input_ids"]
        batch_size, width = input_ids.shape
        device = input_ids.device
        shift = self._randint(-self.max_shift, self.max_shift + 1, (batch_size, 1), device=device)
        positions = torch.arange(width, device=device).expand_as(input_ids)
        rotated = start + (positions - start - shift).remainder(length.clamp(min=1))
        out = _permute_rows(batch, torch.where(content, rotated, positions), ("input_ids", "labels"))
        if not layout.overlapping:
            return out
        if (content & (input_ids == layout.mask_id)).any():
            raise ValueError("RandomShift on overlapping k-mers must run before masking ([MASK] found).")
        # Rotate the bases of each row (left-aligned, n + k - 1 of them) and re-tokenize every window.
        aligned = _permute_rows({"input_ids": input_ids}, (positions + start).clamp(max=width - 1), ("input_ids",))
        bases = layout.nucleotides(aligned["input_ids"], positions < length)
        span = torch.arange(bases.shape[1], device=device).expand_as(bases)
        n_bases = (length + layout.k - 1).clamp(min=1)
        bases = bases.gather(1, torch.where(span < n_bases, (span - shift).remainder(n_bases), span))
        kmers = layout.encode_overlapping(bases, width)
        placed = kmers.gather(1, (positions - start).clamp(min=0))
        out["input_ids"] = torch.where(content, placed, input_ids)
        return out


class PointMutation(TokenAugmentation):
    """Substitute each known base with probability ``rate`` by one of the three other bases, uniformly.

    Works on bases, not tokens: for overlapping k-mers one substitution rewrites all k k-mers that contain
    the base, consistently; for non-overlapping k-mers it rewrites the chunk holding it. ``N``, ``[UNK]``,
    ``[MASK]`` and specials are never mutated.
    """

    def __init__(self, tokenizer, rate: float = 0.01, seed: int | None = None):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}.")
        super().__init__(tokenizer, seed)
        self.rate = rate

    def _mutate(self, codes: torch.Tensor) -> torch.Tensor:
        hit = (codes >= 0) & (self._rand(*codes.shape, device=codes.device) < self.rate)
        offset = self._randint(1, 4, tuple(codes.shape), device=codes.device)
        return torch.where(hit, (codes + offset) % 4, codes)

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        layout, content, _, _ = self._prepare(batch)
        input_ids = batch["input_ids"]
        out = dict(batch)
        if layout.overlapping:
            bases = self._mutate(layout.nucleotides(input_ids, content))
            kmers = layout.encode_overlapping(bases, input_ids.shape[1])
            out["input_ids"] = torch.where(content & layout.is_kmer[input_ids], kmers, input_ids)
            return out
        codes = layout.codes[input_ids]  # (B, L, k); a single base fills column 0
        is_kmer = layout.is_kmer[input_ids] & (layout.k > 1)
        is_base = content & ~is_kmer & (codes[..., 0] >= 0)
        codes = torch.where((content & is_kmer).unsqueeze(-1) | is_base.unsqueeze(-1), codes, _UNKNOWN)
        mutated = self._mutate(codes)
        new_ids = torch.where(is_kmer, layout.kmer_ids[layout._kmer_index(mutated)], layout.base_ids[mutated[..., 0].clamp(min=0)])
        out["input_ids"] = torch.where((content & is_kmer) | is_base, new_ids, input_ids)
        return out


class RandomMasking(TokenAugmentation):
    """Mask about ``rate`` of each row's sequence tokens, BERT style.

    Masked positions become ``[MASK]`` with probability ``mask_replace_prob``, a random sequence token with
    ``random_replace_prob``, and stay unchanged otherwise. Masks come in spans of ``span`` tokens (default
    ``k`` for overlapping k-mers, so that each span hides at least one base, else 1). With ``labels_key``
    set, MLM targets (original id where masked, -100 elsewhere) are written to ``batch[labels_key]``.
    """

    def __init__(
        self,
        tokenizer,
        rate: float = 0.15,
        seed: int | None = None,
        span: int | None = None,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        labels_key: str | None = None,
    ):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}.")
        if mask_replace_prob < 0 or random_replace_prob < 0 or mask_replace_prob + random_replace_prob > 1:
            raise ValueError("mask_replace_prob and random_replace_prob must be >= 0 and sum to at most 1.")
        super().__init__(tokenizer, seed)
        self.span = span if span is not None else (self.layout.k if self.layout.overlapping else 1)
        if self.span < 1:
            raise ValueError(f"span must be >= 1, got {self.span}.")
        self.rate = rate
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.labels_key = labels_key

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        layout, content, _, _ = self._prepare(batch)
        if self.labels_key is not None and self.labels_key in batch:
            raise ValueError(f"batch already has '{self.labels_key}'; RandomMasking would overwrite it.")
        input_ids = batch["input_ids"]
        device = input_ids.device
        # Span starts at rate/span so that about `rate` of the tokens end up masked.
        starts = content & (self._rand(*input_ids.shape, device=device) < self.rate / self.span)
        masked = F.max_pool1d(F.pad(starts.float().unsqueeze(1), (self.span - 1, 0)), self.span, stride=1)
        masked = masked.squeeze(1).bool() & content
        draw = self._rand(*input_ids.shape, device=device)
        random_ids = layout.random_ids[self._randint(0, len(layout.random_ids), tuple(input_ids.shape), device=device)]
        corrupted = torch.where(draw < self.mask_replace_prob, layout.mask_id, input_ids)
        corrupted = torch.where(
            (draw >= self.mask_replace_prob) & (draw < self.mask_replace_prob + self.random_replace_prob),
            random_ids,
            corrupted,
        )
        out = dict(batch)
        out["input_ids"] = torch.where(masked, corrupted, input_ids)
        if self.labels_key is not None:
            out[self.labels_key] = torch.where(masked, input_ids, -100)
        return out


class Compose:
    """Apply augmentations in order. ``manual_seed`` reseeds each one with a seed derived from one integer."""

    def __init__(self, augmentations: Sequence):
        self.augmentations = list(augmentations)
        if not all(callable(aug) for aug in self.augmentations):
            raise ValueError("Compose takes a list of callables batch -> batch.")

    def manual_seed(self, seed: int) -> None:
        sub_seeds = torch.randint(0, 2**62, (len(self.augmentations),), generator=torch.Generator().manual_seed(seed))
        for aug, sub_seed in zip(self.augmentations, sub_seeds.tolist()):
            if hasattr(aug, "manual_seed"):
                aug.manual_seed(sub_seed)

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for aug in self.augmentations:
            batch = aug(batch)
        return batch

    def __repr__(self) -> str:
        return f"Compose({self.augmentations!r})"
