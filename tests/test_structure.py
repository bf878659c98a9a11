"""Structure parsers on the real ArchiveII and e2efold CT files (data/, see data/PROVENANCE.md)."""

import csv
import json

import numpy as np
import pytest

from hf_genomics.data.structure import (
    dot_bracket_to_pairs,
    matrix_to_pairs,
    pairs_to_dot_bracket,
    pairs_to_matrix,
    read_bpseq,
    read_ct,
    write_bpseq,
    write_ct,
)


@pytest.fixture(scope="module")
def archiveii(data_dir):
    with open(data_dir / "archiveii" / "ArchiveII.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # Every pseudoknotted record plus a spread of nested ones keeps the test fast.
    curly = [row for row in rows if "{" in row["structure"]]
    angle = [row for row in rows if "<" in row["structure"] and "{" not in row["structure"]]
    return curly + angle[:300] + rows[::40]


def test_dot_bracket_matches_archiveii_base_pairs_column(archiveii):
    assert any("<" in row["structure"] for row in archiveii) and any("{" in row["structure"] for row in archiveii)
    for row in archiveii:
        pairs = dot_bracket_to_pairs(row["structure"], row["sequence"], name=row["id"])
        expected = np.array(json.loads(row["base_pairs"]), dtype=np.int64).reshape(-1, 2) - 1
        np.testing.assert_array_equal(pairs, expected[np.argsort(expected[:, 0])], err_msg=row["id"])
        # Back to dot-bracket: bracket types may be renumbered, the pairs may not change.
        round_trip = pairs_to_dot_bracket(pairs, len(row["sequence"]))
        np.testing.assert_array_equal(dot_bracket_to_pairs(round_trip), pairs)
        matrix = pairs_to_matrix(pairs, len(row["sequence"]))
        assert matrix.sum() == 2 * len(pairs) and np.array_equal(matrix, matrix.T)
        np.testing.assert_array_equal(matrix_to_pairs(matrix), pairs)


def test_letter_pseudoknot_pairs():
    np.testing.assert_array_equal(dot_bracket_to_pairs("((A..))a"), [[0, 6], [1, 5], [2, 7]])
    assert pairs_to_dot_bracket([[0, 2], [1, 3]], 4) == "([)]"


def test_ct_files_round_trip_and_match_raw_sequences(data_dir):
    files = sorted((data_dir / "ct_examples_e2efold").glob("*.ct"))
    assert len(files) == 4
    for path in files:
        sequence, pairs = read_ct(path)
        assert sequence == path.with_suffix("").read_text().strip().upper()
        lines = [line.split() for line in path.read_text().splitlines()[1:] if line.strip()]
        expected = sorted((int(f[0]) - 1, int(f[4]) - 1) for f in lines if int(f[4]) > int(f[0]))
        np.testing.assert_array_equal(pairs, np.array(expected).reshape(-1, 2))
        for writer, reader in ((write_ct, read_ct), (write_bpseq, read_bpseq)):
            again_sequence, again_pairs = reader(writer(sequence, pairs, path.name))
            assert again_sequence == sequence
            np.testing.assert_array_equal(again_pairs, pairs)


@pytest.mark.parametrize(
    "structure, sequence, message",
    [
        ("((..)", "ACGUA", r"1 unclosed '\('"),
        ("(..))", "ACGUA", r"unbalanced '\)' at position 4"),
        ("(([..))]", "ACGUACGU", None),
        ("((..))", "ACGU", "length 6 but the sequence has 4"),
        ("((..)#", "ACGUAC", "unknown dot-bracket characters"),
    ],
)
def test_malformed_structures_name_the_record(structure, sequence, message):
    if message is None:
        np.testing.assert_array_equal(dot_bracket_to_pairs(structure, sequence), [[0, 6], [1, 5], [2, 7]])
        return
    with pytest.raises(ValueError, match=message) as error:
        dot_bracket_to_pairs(structure, sequence, name="rna_42")
    assert "rna_42" in str(error.value)


def test_malformed_ct_and_bpseq():
    with pytest.raises(ValueError, match="does not pair back"):
        read_bpseq("1 A 3\n2 C 0\n3 G 0\n", name="bad")
    with pytest.raises(ValueError, match="header says 3 bases"):
        read_ct("3 x\n1 A 0 2 0 1\n2 C 1 3 0 2\n", name="short")
    with pytest.raises(ValueError, match="more than one pair"):
        write_bpseq("ACGU", [[0, 2], [0, 3]])
