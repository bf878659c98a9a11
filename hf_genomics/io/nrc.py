"""Reader for nRC, the ncRNA family classification set (Fiannaca et al., 2017) that BEACON's ncRNA task uses."""

from pathlib import Path

from ..data.beacon import NCRNA_LABELS
from .fasta import read_fasta


def read_nrc(path: str | Path) -> list[dict]:
    """Rows ``{"id", "sequence", "label"}`` of an nRC FASTA file, in file order.

    The header's first token is the record id and its last the family; ``label`` is the family's index in
    ``NCRNA_LABELS``. A family outside the 13, or an empty header, raises a ``ValueError`` naming the record.
    """
    rows = []
    for header, sequence in read_fasta(path):
        fields = header.split()
        if not fields:
            raise ValueError(f"{path}: record {len(rows) + 1} has an empty header; expected '>ID ... FAMILY'.")
        if fields[-1] not in NCRNA_LABELS:
            raise ValueError(
                f"{path}: record {fields[0]!r} has family {fields[-1]!r}, not one of the 13 nRC families "
                f"{', '.join(NCRNA_LABELS)}."
            )
        rows.append({"id": fields[0], "sequence": sequence, "label": NCRNA_LABELS.index(fields[-1])})
    return rows
