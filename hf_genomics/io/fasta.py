"""FASTA reading for genome and RNA corpora: gzip, soft-masked repeats, CRLF line endings, runs of N."""

import gzip
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

GZIP_MAGIC = b"\x1f\x8b"


def _open(path: Path, mode: str = "rt"):
    """`path` opened as ASCII text (`mode="rt"`) or bytes (`"rb"`), through gzip if it is compressed."""
    with open(path, "rb") as handle:
        magic = handle.read(2)
    encoding = None if mode == "rb" else "ascii"
    # The magic bytes, not the extension, decide: `.fa.gz` files are sometimes stored uncompressed and vice versa.
    if magic == GZIP_MAGIC:
        return gzip.open(path, mode, encoding=encoding)
    return open(path, mode, encoding=encoding)


def read_fasta(path: str | Path, uppercase: bool = True) -> Iterator[tuple[str, str]]:
    """Yields `(header, sequence)` for each record of a FASTA file, plain or gzip-compressed.

    The header is the text after `>`; sequence lines are joined without their line endings (LF or CRLF).
    With `uppercase=True`, soft-masked (lowercase) repeats are upper-cased. A file that is not ASCII FASTA (a
    non-ASCII byte, truncated or corrupt gzip data, sequence before a header) raises a `ValueError` naming it.

    Example:

    ```python
    >>> from hf_genomics import read_fasta
    >>> header, sequence = next(read_fasta("data/lambda_phage/lambda_virus.fa.gz"))
    >>> header.split()[0], len(sequence), sequence[:10]
    ('gi|9626243|ref|NC_001416.1|', 48502, 'GGGCGGCGAC')

    ```
    """
    path = Path(path)
    header, lines, line_number = None, [], 0
    # Decoding and decompression errors are caught around the whole loop (not per line) to keep reading fast.
    try:
        with _open(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                line = line.strip()
                if line.startswith(">"):
                    if header is not None:
                        yield header, _join(lines, uppercase)
                    header, lines = line[1:].strip(), []
                elif line:
                    if header is None:
                        raise ValueError(
                            f"{path}: line {line_number} holds sequence before any '>' header; expected a FASTA file."
                        )
                    lines.append(line)
    except UnicodeDecodeError as error:
        line_number, byte = _first_non_ascii(path)
        raise ValueError(
            f"{path}: line {line_number} holds the non-ASCII byte {byte:#04x}; expected an ASCII FASTA file, plain "
            "or gzip-compressed."
        ) from error
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(
            f"{path}: gzip data is truncated or corrupt ({error}) after {line_number} readable line(s); expected an "
            "ASCII FASTA file, plain or gzip-compressed."
        ) from error
    if header is None:
        raise ValueError(f"{path}: no FASTA record (no line starting with '>').")
    yield header, _join(lines, uppercase)


def _first_non_ascii(path: Path) -> tuple[int, int]:
    """(line number, byte) of the first non-ASCII byte of a plain or gzip file, read again only to name it."""
    with _open(path, "rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.isascii():
                return line_number, next(byte for byte in line if byte > 0x7F)
    raise AssertionError(f"{path}: no non-ASCII byte found on a second read; the file changed while being read?")


def _join(lines: list[str], uppercase: bool) -> str:
    sequence = "".join(lines)
    return sequence.upper() if uppercase else sequence


def split_on_n_runs(sequence: str, min_run: int = 1) -> list[str]:
    """The non-empty pieces of `sequence` between runs of at least `min_run` `N`s (either case).

    Shorter runs stay inside the pieces, where the tokenizers read them as `N`.

    Example:

    ```python
    >>> from hf_genomics import split_on_n_runs
    >>> split_on_n_runs("NNACGTNACNNNNGT", min_run=2)
    ['ACGTNAC', 'GT']

    ```
    """
    if isinstance(min_run, bool) or not isinstance(min_run, int) or min_run < 1:
        raise ValueError(f"min_run must be a positive integer, got {min_run!r}.")
    return [piece for piece in re.split(f"[Nn]{{{min_run},}}", sequence) if piece]
