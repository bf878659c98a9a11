"""RNA secondary-structure formats: dot-bracket, bpseq and CT, to and from 0-based pair lists and L x L matrices.

A pair list is an int64 array of shape (P, 2) with 0-based `i < j`, sorted by `i`. Errors name the record
(`name=`) so a bad row in a large file can be found.
"""

from pathlib import Path

import numpy as np


# Pseudoknot-aware bracket alphabet: page k of a structure uses BRACKETS[k].
BRACKETS = ("()", "[]", "{}", "<>") + tuple(chr(ord("A") + k) + chr(ord("a") + k) for k in range(26))
UNPAIRED = ".,:-_~"


def _record(name: str | None) -> str:
    return f"record {name!r}" if name is not None else "structure"


def _check_length(length: int, sequence: str | None, name: str | None) -> None:
    if sequence is not None and len(sequence) != length:
        raise ValueError(f"{_record(name)}: structure has length {length} but the sequence has {len(sequence)}.")


def dot_bracket_to_pairs(structure: str, sequence: str | None = None, name: str | None = None) -> np.ndarray:
    """Parse dot-bracket (with pseudoknot brackets `[]{}<>` and `Aa`..`Zz`) into a (P, 2) 0-based pair array.

    Each bracket type is matched by nesting depth: within one type, an opener at depth d closes at the next
    closer that brings the depth back to d - 1, so sorting by (depth, position) puts each opener right before
    its partner, with no per-character Python loop.
    """
    _check_length(len(structure), sequence, name)
    chars = np.frombuffer(structure.encode("ascii", errors="replace"), dtype=np.uint8)
    known = np.isin(chars, np.frombuffer((UNPAIRED + "".join(BRACKETS)).encode(), dtype=np.uint8))
    if not known.all():
        bad = sorted(set(structure[i] for i in np.flatnonzero(~known)))
        raise ValueError(
            f"{_record(name)}: unknown dot-bracket characters {bad}; accepted are {UNPAIRED!r} for unpaired "
            f"and the bracket pairs (), [], {{}}, <>, Aa..Zz."
        )
    pairs = []
    for opener, closer in BRACKETS:
        is_open, is_close = chars == ord(opener), chars == ord(closer)
        if not (is_open.any() or is_close.any()):
            continue
        step = is_open.astype(np.int64) - is_close.astype(np.int64)
        depth = np.cumsum(step)
        if depth.min() < 0:
            position = int(np.argmax(depth < 0))
            raise ValueError(f"{_record(name)}: unbalanced {closer!r} at position {position} has no opening {opener!r}.")
        if depth[-1] != 0:
            raise ValueError(f"{_record(name)}: {int(depth[-1])} unclosed {opener!r} bracket(s).")
        positions = np.flatnonzero(is_open | is_close)
        # Depth of the bracket itself: after opening for an opener, before closing for a closer.
        level = np.where(is_open[positions], depth[positions], depth[positions] + 1)
        ordered = positions[np.lexsort((positions, level))]
        pairs.append(ordered.reshape(-1, 2))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(pairs).astype(np.int64)
    return pairs[np.argsort(pairs[:, 0], kind="stable")]


def _pages(pairs: np.ndarray) -> list[int]:
    """Greedy page assignment: each pair goes to the first bracket type it does not cross."""
    assigned: list[list[tuple[int, int]]] = []
    pages = []
    for i, j in pairs.tolist():
        for page, members in enumerate(assigned):
            if not any(a < i < b < j or i < a < j < b for a, b in members):
                members.append((i, j))
                pages.append(page)
                break
        else:
            if len(assigned) == len(BRACKETS):
                raise ValueError(f"structure needs more than {len(BRACKETS)} bracket types.")
            assigned.append([(i, j)])
            pages.append(len(assigned) - 1)
    return pages


def pairs_to_dot_bracket(pairs, length: int, name: str | None = None) -> str:
    """Write a pair list as dot-bracket, using `[]`, `{}`, `<>`, `Aa`, ... for crossing (pseudoknotted) pairs."""
    pairs = validate_pairs(pairs, length, name)
    chars = np.full(length, ".", dtype="<U1")
    for (i, j), page in zip(pairs.tolist(), _pages(pairs)):
        chars[i], chars[j] = BRACKETS[page]
    return "".join(chars)


def validate_pairs(pairs, length: int, name: str | None = None) -> np.ndarray:
    """Return pairs as a sorted (P, 2) int64 array with i < j; raise if out of range or a base pairs twice."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    pairs = np.sort(pairs, axis=1)
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= length):
        raise ValueError(f"{_record(name)}: pair index out of range for length {length} (0-based indices expected).")
    if np.any(pairs[:, 0] == pairs[:, 1]):
        raise ValueError(f"{_record(name)}: a base cannot pair with itself.")
    counts = np.bincount(pairs.reshape(-1), minlength=length)
    if np.any(counts > 1):
        raise ValueError(f"{_record(name)}: base(s) {np.flatnonzero(counts > 1).tolist()} are in more than one pair.")
    return pairs[np.argsort(pairs[:, 0], kind="stable")]


def pairs_to_matrix(pairs, length: int, dtype=np.float32) -> np.ndarray:
    """Symmetric L x L 0/1 pairing matrix."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    matrix = np.zeros((length, length), dtype=dtype)
    matrix[pairs[:, 0], pairs[:, 1]] = 1
    matrix[pairs[:, 1], pairs[:, 0]] = 1
    return matrix


def matrix_to_pairs(matrix, threshold: float = 0.5) -> np.ndarray:
    """Pairs (i < j) whose upper-triangle entry exceeds `threshold`."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"expected an L x L matrix, got shape {matrix.shape}.")
    return np.argwhere(np.triu(matrix > threshold, k=1)).astype(np.int64)


def _pairs_from_partner_column(partner: np.ndarray, name: str | None) -> np.ndarray:
    """1-based partner column (0 = unpaired) -> pairs; the two ends of each pair must agree."""
    length = len(partner)
    if partner.min(initial=0) < 0 or partner.max(initial=0) > length:
        raise ValueError(f"{_record(name)}: partner index outside 1..{length}.")
    i = np.flatnonzero(partner) + 1
    j = partner[i - 1]
    if np.any(partner[j - 1] != i):
        bad = int(i[np.argmax(partner[j - 1] != i)])
        raise ValueError(f"{_record(name)}: base {bad} pairs with {int(partner[bad - 1])}, which does not pair back.")
    upper = i < j
    return np.stack([i[upper], j[upper]], axis=1).astype(np.int64) - 1


def _text(source) -> tuple[str, str | None]:
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and Path(source).is_file()):
        return Path(source).read_text(), Path(source).name
    return source, None


def read_bpseq(source, name: str | None = None) -> tuple[str, np.ndarray]:
    """Parse bpseq (lines `index base partner`, 1-based, 0 = unpaired; `#` comments) -> (sequence, pairs)."""
    text, file_name = _text(source)
    name = name or file_name
    rows = [line.split() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not rows or any(len(row) != 3 for row in rows):
        raise ValueError(f"{_record(name)}: bpseq lines must have 3 fields `index base partner`.")
    index = np.array([int(row[0]) for row in rows])
    if not np.array_equal(index, np.arange(1, len(rows) + 1)):
        raise ValueError(f"{_record(name)}: bpseq indices must run 1..{len(rows)} in order.")
    sequence = "".join(row[1] for row in rows)
    return sequence, _pairs_from_partner_column(np.array([int(row[2]) for row in rows]), name)


def read_ct(source, name: str | None = None) -> tuple[str, np.ndarray]:
    """Parse the first structure of a CT (connect) file -> (sequence, pairs).

    Header `N [title]`, then N lines `index base prev next partner natural_index` (partner 1-based, 0 = unpaired).
    """
    text, file_name = _text(source)
    name = name or file_name
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        length = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise ValueError(f"{_record(name)}: CT header must start with the sequence length.") from None
    rows = [line.split() for line in lines[1 : 1 + length]]
    if len(rows) != length or any(len(row) < 6 for row in rows):
        raise ValueError(f"{_record(name)}: CT header says {length} bases but the file has {len(rows)} complete lines.")
    index = np.array([int(row[0]) for row in rows])
    if not np.array_equal(index, np.arange(1, length + 1)):
        raise ValueError(f"{_record(name)}: CT indices must run 1..{length} in order.")
    sequence = "".join(row[1] for row in rows)
    return sequence, _pairs_from_partner_column(np.array([int(row[4]) for row in rows]), name)


def _partner_column(pairs, length: int, name: str | None) -> np.ndarray:
    pairs = validate_pairs(pairs, length, name)
    partner = np.zeros(length, dtype=np.int64)
    partner[pairs[:, 0]] = pairs[:, 1] + 1
    partner[pairs[:, 1]] = pairs[:, 0] + 1
    return partner


def write_bpseq(sequence: str, pairs, name: str | None = None) -> str:
    """bpseq text for a sequence and its 0-based pairs."""
    partner = _partner_column(pairs, len(sequence), name)
    return "".join(f"{k + 1} {base} {partner[k]}\n" for k, base in enumerate(sequence))


def write_ct(sequence: str, pairs, name: str = "") -> str:
    """CT text (single structure) for a sequence and its 0-based pairs."""
    length = len(sequence)
    partner = _partner_column(pairs, length, name)
    lines = [f"{length}\t{name}"]
    lines += [f"{k + 1}\t{base}\t{k}\t{(k + 2) % (length + 1)}\t{partner[k]}\t{k + 1}" for k, base in enumerate(sequence)]
    return "\n".join(lines) + "\n"
